/* libFuzzer target: the label selector parser, which reads selectors from Sandbox specs,
 * config files and users. Any input must give a selector or an error, never a crash; a
 * selector's canonical form must parse again to the same form and the same answers. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/selector.h"

/* A small labels map with the shapes matching must survive: present, empty, an integer,
 * a prefixed key, and non-string values. */
static json_t *make_labels(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:n, s:o}", "a", "b", "app", "web", "empty",
                     "", "n", "42", "example.com/role", "db", "count", 3, "nil", "obj",
                     json_object());
}

static char *canonical(const char *text, kube_selector **ret)
{
    moat_error err = MOAT_ERROR_INIT;
    if (kube_selector_parse(ret, text, &err) < 0) {
        if (!err.message)
            abort(); /* a failure must always say why */
        moat_error_clear(&err);
        return NULL;
    }
    char *s = kube_selector_string(*ret);
    if (!s)
        abort();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    kube_selector *first = NULL, *second = NULL;
    char *once = canonical(text, &first);
    if (once) {
        char *twice = canonical(once, &second);
        if (!twice || strcmp(once, twice) != 0)
            abort(); /* the canonical form must be a fixed point */
        json_t *labels = make_labels();
        if (kube_selector_matches(first, labels) != kube_selector_matches(second, labels) ||
            kube_selector_matches(first, NULL) != kube_selector_matches(second, NULL))
            abort();
        /* One label at a time: each must give the same answer for both selectors. */
        const char *key;
        json_t *value;
        json_object_foreach (labels, key, value) {
            json_t *one = json_pack("{s:O}", key, value);
            if (kube_selector_matches(first, one) != kube_selector_matches(second, one))
                abort();
            json_decref(one);
        }
        json_decref(labels);
        free(twice);
    }
    free(once);
    kube_selector_free(second);
    kube_selector_free(first);
    free(text);
    return 0;
}
