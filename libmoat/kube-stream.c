/* kube_stream_get: a GET whose body goes to a callback as it arrives (see kube.h). */
#include <curl/curl.h>

#include "kube-internal.h"
#include "kube.h"
#include "strbuf.h"

/* An error answer's body (a Status) is kept up to this; a stream's body is never kept. */
#define ERROR_BODY_MAX ((size_t)1 << 20)

typedef struct {
    CURL *h;
    kube_stream_cb on_data;
    void *user;
    long status;       /* the HTTP status, read at the first piece of body */
    moat_strbuf error; /* the body of an answer that is not 2xx */
    bool canceled;
} stream_state;

static size_t on_piece(char *ptr, size_t size, size_t nmemb, void *user)
{
    stream_state *s = user;
    size_t n = size * nmemb;
    if (s->status == 0)
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status < 200 || s->status > 299) {
        moat_strbuf_append(&s->error, ptr, n); /* past its cap: no body, the code alone */
        return n;
    }
    if (s->on_data(s->user, ptr, n) < 0) {
        s->canceled = true;
        return 0; /* aborts the transfer */
    }
    return n;
}

/* libcurl's progress callback, about once a second while the transfer is quiet. */
static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    stream_state *s = user;
    if (s->on_data(s->user, "", 0) < 0) {
        s->canceled = true;
        return 1; /* aborts the transfer */
    }
    return 0;
}

int kube_stream_get(kube_client *c, const char *path, kube_stream_cb on_data, void *user,
                    moat_error *err)
{
    stream_state s = {.on_data = on_data, .user = user, .error = {.max = ERROR_BODY_MAX}};
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    int r = -1;

    if (!(s.h = curl_easy_init()))
        return moat_error_set(err, MOAT_E_NOMEM, "curl_easy_init failed");
    if (kube_client_setup_easy(c, s.h, path, &headers, err) < 0)
        goto out;
    curl_easy_setopt(s.h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(s.h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(s.h, CURLOPT_WRITEFUNCTION, on_piece);
    curl_easy_setopt(s.h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(s.h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(s.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(s.h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(s.h, CURLOPT_XFERINFODATA, &s);

    CURLcode cc = curl_easy_perform(s.h);
    if (s.canceled) {
        moat_error_set(err, MOAT_E_CANCELED, "GET %s: stopped by its reader", path);
        goto out;
    }
    if (cc != CURLE_OK) {
        moat_error_set(err, MOAT_E_NETWORK, "GET %s: %s", path,
                       *errbuf ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    if (s.status == 0)
        curl_easy_getinfo(s.h, CURLINFO_RESPONSE_CODE, &s.status);
    if (s.status < 200 || s.status > 299) {
        size_t len = 0;
        _cleanup_free_ char *body = moat_strbuf_take_len(&s.error, &len);
        kube_status_to_error(err, s.status, body ? body : "", body ? len : 0, path);
        goto out;
    }
    r = 0;
out:
    moat_strbuf_free(&s.error);
    curl_slist_free_all(headers);
    curl_easy_cleanup(s.h);
    return r;
}
