#include "mark.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"
#include "libmoat/textfile.h"

#define MARK_PREFIX  "v1."
#define DIGEST_BYTES 32
/* unpadded base64url of 32 bytes */
#define DIGEST_TEXT 43

struct sandbox_mark_key {
    size_t len;
    unsigned char bytes[];
};

#define _cleanup_json_ _cleanup_(json_decrefp)

int sandbox_mark_key_new(sandbox_mark_key **out, const void *bytes, size_t len, moat_error *err)
{
    if (len < MARK_KEY_MIN)
        return moat_error_set(err, MOAT_E_INVALID, "%zu bytes of key; at least %d are needed", len,
                              MARK_KEY_MIN);
    if (len > MARK_KEY_MAX)
        return moat_error_set(err, MOAT_E_INVALID, "%zu bytes of key; at most %d are used", len,
                              MARK_KEY_MAX);
    sandbox_mark_key *k = malloc(sizeof(*k) + len);
    if (!k)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    k->len = len;
    memcpy(k->bytes, bytes, len);
    *out = k;
    return 0;
}

int sandbox_mark_key_load(sandbox_mark_key **out, const char *path, moat_error *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    /* one byte over the cap so that a longer file is told apart from one at the cap */
    if (moat_read_text(&text, &len, path, MARK_KEY_MAX + 1, err) < 0)
        return moat_error_prefix(err, "the mark key");
    if (len > 0 && text[len - 1] == '\n')
        len--;
    int r = sandbox_mark_key_new(out, text, len, err);
    OPENSSL_cleanse(text, len);
    if (r < 0)
        return moat_error_prefix(err, "the mark key %s", path);
    return 0;
}

void sandbox_mark_key_free(sandbox_mark_key *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->bytes, k->len);
    free(k);
}

static bool flag(const json_t *obj, const char *path)
{
    return kobj_bool(obj, path, false);
}

/* [[name, image, privileged, allowPrivilegeEscalation (absent: true, as the kernel's
 * default), capabilities added, host ports]] of a container list; NULL when out of
 * memory. */
static json_t *containers_subject(const json_t *list)
{
    json_t *out = json_array(), *c;
    size_t i;
    if (!out)
        return NULL;
    json_array_foreach (list, i, c) {
        const char *name = kobj_str(c, "name"), *image = kobj_str(c, "image");
        json_t *caps = kobj_get(c, "securityContext.capabilities.add");
        json_t *ports = json_array(), *p;
        size_t k;
        json_array_foreach (kobj_get(c, "ports"), k, p) {
            int64_t hp = 0;
            if (kobj_int(p, "hostPort", &hp) && hp != 0)
                json_array_append_new(ports, json_integer(hp));
        }
        json_t *item = json_pack("[s, s, b, b, O, o]", name ? name : "", image ? image : "",
                                 flag(c, "securityContext.privileged"),
                                 kobj_bool(c, "securityContext.allowPrivilegeEscalation", true),
                                 json_is_array(caps) ? caps : json_null(), ports);
        if (!item || json_array_append_new(out, item) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* [[name, the kind of its source]]: "emptyDir", "hostPath", ... (the source's fields are
 * defaulted by the API server, its kind is not). */
static json_t *volumes_subject(const json_t *list)
{
    json_t *out = json_array(), *v;
    size_t i;
    if (!out)
        return NULL;
    json_array_foreach (list, i, v) {
        const char *name = kobj_str(v, "name"), *kind = "", *k;
        json_t *x;
        json_object_foreach ((json_t *)v, k, x)
            if (strcmp(k, "name") != 0)
                kind = k;
        json_array_append_new(out, json_pack("[s, s]", name ? name : "", kind));
    }
    return out;
}

/* The keys of metadata.<field> that the operator writes: every moat.dev/ key but the node
 * agent's report and the mark itself. */
static json_t *moat_keys(const json_t *pod, const char *field)
{
    json_t *out = json_object(), *v;
    const char *k;
    if (!out)
        return NULL;
    json_object_foreach (kobj_get(pod, field), k, v) {
        /* the node agent's keys are written after the Pod, by the agent */
        if (strncmp(k, "moat.dev/", 9) != 0 || strcmp(k, MOAT_ANNOTATION_ISOLATION_REPORT) == 0 ||
            strcmp(k, MOAT_ANNOTATION_LAST_ACTIVITY) == 0 || strcmp(k, MOAT_ANNOTATION_MARK) == 0)
            continue;
        if (json_object_set(out, k, v) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* The subject as canonical JSON (sorted keys, compact); NULL when out of memory. */
static char *subject_text(const json_t *pod, const char *owner_uid)
{
    const char *rc = kobj_str(pod, "spec.runtimeClassName");
    const char *sa = kobj_str(pod, "spec.serviceAccountName");
    const char *seccomp = kobj_str(pod, "spec.securityContext.seccompProfile.type");
    /* Absent values read as what the API server and the kubelet make of them: a token is
     * mounted unless told not to, the service account is "default", user namespaces are
     * off (hostUsers true). */
    _cleanup_json_ json_t *s = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:s, s:s, s:b,"
        " s:o, s:o, s:o, s:o, s:o, s:o}",
        "v", "1", "namespace", kobj_namespace(pod) ?: "", "name", kobj_name(pod) ?: "", "owner",
        owner_uid ? owner_uid : "", "runtimeClassName", rc ? rc : "", "hostNetwork",
        flag(pod, "spec.hostNetwork"), "hostPID", flag(pod, "spec.hostPID"), "hostIPC",
        flag(pod, "spec.hostIPC"), "automountServiceAccountToken",
        kobj_bool(pod, "spec.automountServiceAccountToken", true), "serviceAccountName",
        sa && *sa ? sa : "default", "seccomp", seccomp ? seccomp : "", "hostUsers",
        kobj_bool(pod, "spec.hostUsers", true), "containers",
        containers_subject(kobj_get(pod, "spec.containers")), "initContainers",
        containers_subject(kobj_get(pod, "spec.initContainers")), "ephemeralContainers",
        containers_subject(kobj_get(pod, "spec.ephemeralContainers")), "volumes",
        volumes_subject(kobj_get(pod, "spec.volumes")), "labels", moat_keys(pod, "metadata.labels"),
        "annotations", moat_keys(pod, "metadata.annotations"));
    if (!s)
        return NULL;
    return json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
}

static void base64url(char *out, const unsigned char *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    } else if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    }
    out[o] = '\0';
}

char *sandbox_mark_compute(const sandbox_mark_key *key, const json_t *pod, const char *owner_uid)
{
    _cleanup_free_ char *subject = subject_text(pod, owner_uid);
    unsigned char digest[DIGEST_BYTES];
    unsigned int n = 0;
    if (!subject)
        return NULL;
    if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, (const unsigned char *)subject,
              strlen(subject), digest, &n) ||
        n != DIGEST_BYTES)
        return NULL;
    char *out = malloc(sizeof(MARK_PREFIX) + DIGEST_TEXT);
    if (!out)
        return NULL;
    memcpy(out, MARK_PREFIX, sizeof(MARK_PREFIX) - 1);
    base64url(out + sizeof(MARK_PREFIX) - 1, digest, sizeof(digest));
    return out;
}

int sandbox_mark_set(json_t *pod, const sandbox_mark_key *key, const char *owner_uid,
                     moat_error *err)
{
    json_t *annotations = kobj_get(pod, "metadata.annotations");
    if (!json_is_object(annotations))
        return moat_error_set(err, MOAT_E_INVALID, "the pod has no annotations to mark");
    /* The mark is not part of its own subject (moat_keys skips it), so an old one can stay
     * while the new one is computed. */
    _cleanup_free_ char *mark = sandbox_mark_compute(key, pod, owner_uid);
    if (!mark || json_object_set_new(annotations, MOAT_ANNOTATION_MARK, json_string(mark)) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory marking the pod");
    return 0;
}

bool sandbox_mark_verify(const sandbox_mark_key *key, const json_t *pod, const char *owner_uid)
{
    const char *have = kobj_annotation(pod, MOAT_ANNOTATION_MARK);
    if (!have || strlen(have) != sizeof(MARK_PREFIX) - 1 + DIGEST_TEXT)
        return false;
    _cleanup_free_ char *want = sandbox_mark_compute(key, pod, owner_uid);
    return want && CRYPTO_memcmp(have, want, strlen(want)) == 0;
}

/* The Pod's controller reference, or NULL. */
static const json_t *controller_ref(const json_t *pod)
{
    json_t *refs = kobj_get(pod, "metadata.ownerReferences"), *r;
    size_t i;
    json_array_foreach (refs, i, r)
        if (kobj_bool(r, "controller", false))
            return r;
    return NULL;
}

static bool is_sandbox_ref(const json_t *ref)
{
    const char *kind = kobj_str(ref, "kind"), *api = kobj_str(ref, "apiVersion");
    return kind && api && strcmp(kind, MOAT_SANDBOX_KIND) == 0 &&
           strncmp(api, MOAT_API_GROUP "/", strlen(MOAT_API_GROUP "/")) == 0;
}

sandbox_pod_claim sandbox_mark_claim(const sandbox_mark_key *key, const json_t *pod,
                                     const char *owner_uid, char *why, size_t len)
{
    const json_t *ctl = controller_ref(pod);
    const char *owner = kobj_str(ctl, "uid");
    if (ctl && is_sandbox_ref(ctl) && owner && owner_uid && strcmp(owner, owner_uid) == 0) {
        if (sandbox_mark_verify(key, pod, owner_uid))
            return SANDBOX_POD_OURS;
        snprintf(why, len,
                 "pod %s/%s names this Sandbox as its controller but does not carry "
                 "moat-operator's mark (%s): it was not made, or was changed, by someone else; "
                 "nothing it reports is trusted",
                 kobj_namespace(pod), kobj_name(pod), MOAT_ANNOTATION_MARK);
        return SANDBOX_POD_FOREIGN;
    }
    /* An earlier Sandbox of the same name: its Pod goes with it (garbage collector). */
    if (ctl && is_sandbox_ref(ctl) && owner)
        return SANDBOX_POD_WAIT;
    if (kobj_get(pod, "metadata.deletionTimestamp"))
        return SANDBOX_POD_WAIT;
    snprintf(why, len,
             "pod %s/%s exists and was not made by moat-operator for this Sandbox (%s): nothing "
             "it reports is trusted",
             kobj_namespace(pod), kobj_name(pod),
             ctl ? "its controller is another object" : "no controller reference to it");
    return SANDBOX_POD_FOREIGN;
}

/* Whether a is to be picked before b, both ours. */
static bool picked_before(const json_t *a, const json_t *b)
{
    bool a_gone = kobj_get(a, "metadata.deletionTimestamp") != NULL;
    bool b_gone = kobj_get(b, "metadata.deletionTimestamp") != NULL;
    if (a_gone != b_gone)
        return b_gone;
    const char *an = kobj_name(a), *bn = kobj_name(b);
    return strcmp(an ? an : "", bn ? bn : "") < 0;
}

const json_t *sandbox_mark_pick(const json_t *pods, const sandbox_mark_key *key,
                                const char *owner_uid)
{
    const json_t *best = NULL, *pod;
    size_t i;
    json_array_foreach (pods, i, pod)
        if ((!best || picked_before(pod, best)) &&
            sandbox_mark_claim(key, pod, owner_uid, NULL, 0) == SANDBOX_POD_OURS)
            best = pod;
    return best;
}

/* Copies obj.path into keep.path ("a.b": the parents made), when present. */
static void keep_path(json_t *keep, const json_t *obj, const char *path)
{
    json_t *v = kobj_get(obj, path);
    if (!v)
        return;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *at = keep;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part;) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            json_object_set(at, part, v);
            break;
        }
        json_t *child = json_object_get(at, part);
        if (!json_is_object(child)) {
            child = json_object();
            json_object_set_new(at, part, child);
        }
        at = child;
        part = next;
    }
}

void sandbox_mark_prune_spec(json_t *pod)
{
    json_t *spec = json_object_get(pod, "spec");
    if (!json_is_object(spec))
        return;
    json_t *keep = json_object();
    if (!keep)
        return;
    static const char *const fields[] = {"nodeName",
                                         "runtimeClassName",
                                         "hostNetwork",
                                         "hostPID",
                                         "hostIPC",
                                         "automountServiceAccountToken",
                                         "serviceAccountName",
                                         "hostUsers",
                                         "securityContext.seccompProfile.type"};
    for (size_t i = 0; i < ELEMENTSOF(fields); i++)
        keep_path(keep, spec, fields[i]);
    static const char *const lists[] = {"containers", "initContainers", "ephemeralContainers"};
    static const char *const container_fields[] = {"name", "image", "securityContext.privileged",
                                                   "securityContext.allowPrivilegeEscalation",
                                                   "securityContext.capabilities.add"};
    for (size_t l = 0; l < ELEMENTSOF(lists); l++) {
        json_t *list = json_object_get(spec, lists[l]), *c;
        size_t i;
        if (!json_is_array(list))
            continue;
        json_t *small = json_array();
        json_array_foreach (list, i, c) {
            json_t *kc = json_object();
            for (size_t f = 0; f < ELEMENTSOF(container_fields); f++)
                keep_path(kc, c, container_fields[f]);
            json_t *ports = json_object_get(c, "ports"), *p;
            size_t k;
            if (json_is_array(ports)) {
                json_t *hp = json_array();
                json_array_foreach (ports, k, p)
                    json_array_append_new(
                        hp, json_pack("{s:O*}", "hostPort", json_object_get(p, "hostPort")));
                json_object_set_new(kc, "ports", hp);
            }
            json_array_append_new(small, kc);
        }
        json_object_set_new(keep, lists[l], small);
    }
    json_t *volumes = json_object_get(spec, "volumes"), *v;
    size_t i;
    if (json_is_array(volumes)) {
        json_t *small = json_array();
        json_array_foreach (volumes, i, v) {
            /* the name, and the source's kind with an empty body */
            json_t *kv = json_object();
            const char *k;
            json_t *x;
            json_object_foreach (v, k, x)
                json_object_set_new(kv, k, strcmp(k, "name") == 0 ? json_copy(x) : json_object());
            json_array_append_new(small, kv);
        }
        json_object_set_new(keep, "volumes", small);
    }
    json_object_set_new(pod, "spec", keep);
}
