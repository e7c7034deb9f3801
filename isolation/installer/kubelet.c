/* Editing kubelet's files for the installer: the CRI endpoint in kubelet's YAML
 * configuration (kept byte for byte around the one value changed) and in its flags file. */
#include "install.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "libmoat/macro.h"
#include "libmoat/strbuf.h"
#include "libmoat/textfile.h"

#define CRI_ENDPOINT_KEY  "containerRuntimeEndpoint"
#define CRI_ENDPOINT_FLAG "--container-runtime-endpoint"

/* ---- kubelet's files ---- */

/* libyaml's marks count characters; the text is UTF-8: turn a character index into a byte
 * offset. */
static size_t char_to_byte(const char *text, size_t len, size_t index)
{
    size_t b = 0;
    for (size_t ch = 0; ch < index && b < len; ch++) {
        b++;
        while (b < len && ((unsigned char)text[b] & 0xC0) == 0x80)
            b++;
    }
    return b;
}

typedef struct {
    yaml_document_t doc;
    yaml_node_t *root;
    yaml_node_t *value; /* containerRuntimeEndpoint's value, or NULL */
    yaml_node_t *first_key;
} kubelet_doc;

static void kubelet_doc_clear(kubelet_doc *k)
{
    yaml_document_delete(&k->doc);
}

static int kubelet_doc_load(kubelet_doc *k, const char *text, size_t len, moat_error *err)
{
    *k = (kubelet_doc){0};
    if (moat_yaml_load_one(&k->doc, text, len, err) < 0)
        return moat_error_prefix(err, "kubelet config");
    k->root = yaml_document_get_root_node(&k->doc);
    if (!k->root || k->root->type != YAML_MAPPING_NODE) {
        int r = moat_error_set(err, MOAT_E_INVALID,
                               "kubelet config: the document is %s, not a "
                               "mapping",
                               moat_yaml_type_name(k->root));
        yaml_document_delete(&k->doc);
        return r;
    }
    for (yaml_node_pair_t *p = k->root->data.mapping.pairs.start;
         p < k->root->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(&k->doc, p->key);
        if (!k->first_key)
            k->first_key = key;
        if (key && key->type == YAML_SCALAR_NODE) {
            const char *s = moat_yaml_scalar_text(key);
            if (s && strcmp(s, CRI_ENDPOINT_KEY) == 0) {
                k->value = yaml_document_get_node(&k->doc, p->value);
                if (!k->value || k->value->type != YAML_SCALAR_NODE) {
                    int r = moat_error_set(err, MOAT_E_INVALID,
                                           "kubelet config: " CRI_ENDPOINT_KEY " is %s, not a "
                                           "string",
                                           moat_yaml_type_name(k->value));
                    yaml_document_delete(&k->doc);
                    return r;
                }
            }
        }
    }
    return 0;
}

int iso_kubelet_config_get_endpoint(char **out, const char *text, size_t len, moat_error *err)
{
    kubelet_doc k;
    if (kubelet_doc_load(&k, text, len, err) < 0)
        return -1;
    char *v = NULL;
    if (k.value && !moat_yaml_is_null(k.value)) {
        const char *s = moat_yaml_scalar_text(k.value);
        if (!s || !(v = strdup(s))) {
            kubelet_doc_clear(&k);
            return moat_error_set(err, MOAT_E_INVALID, "kubelet config: bad " CRI_ENDPOINT_KEY);
        }
    }
    kubelet_doc_clear(&k);
    *out = v;
    return 0;
}

/* endpoint as a YAML/JSON double-quoted string. */
static int quote_value(moat_strbuf *b, const char *v, moat_error *err)
{
    moat_strbuf_appendf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20)
            return moat_error_set(err, MOAT_E_INVALID, "endpoint holds a control character");
        if (*p == '"' || *p == '\\')
            moat_strbuf_appendf(b, "\\%c", *p);
        else
            moat_strbuf_appendf(b, "%c", *p);
    }
    moat_strbuf_appendf(b, "\"");
    return 0;
}

static int text_splice(char **out, const char *text, size_t len, size_t from, size_t to,
                       const char *insert, moat_error *err)
{
    size_t il = strlen(insert);
    char *r = malloc(len - (to - from) + il + 1);
    if (!r)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    memcpy(r, text, from);
    memcpy(r + from, insert, il);
    memcpy(r + from + il, text + to, len - to);
    r[len - (to - from) + il] = '\0';
    *out = r;
    return 0;
}

int iso_kubelet_config_set_endpoint(char **out, const char *text, size_t len, const char *endpoint,
                                    moat_error *err)
{
    kubelet_doc k;
    if (kubelet_doc_load(&k, text, len, err) < 0)
        return -1;
    moat_strbuf b = {0};
    int r = -1;
    char *result = NULL;
    if (k.value) {
        size_t from = char_to_byte(text, len, k.value->start_mark.index);
        size_t to = char_to_byte(text, len, k.value->end_mark.index);
        if (from >= to || to > len) {
            moat_error_set(err, MOAT_E_INVALID,
                           "kubelet config: " CRI_ENDPOINT_KEY " has no value to replace");
            goto done;
        }
        /* A plain scalar's end mark is right after its text; a block scalar's may take the
         * line break: keep trailing line breaks. */
        while (to > from && (text[to - 1] == '\n' || text[to - 1] == '\r'))
            to--;
        if (quote_value(&b, endpoint, err) < 0)
            goto done;
        bool trunc = b.truncated;
        _cleanup_free_ char *q = moat_strbuf_take(&b);
        if (!q || trunc) {
            moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            goto done;
        }
        r = text_splice(&result, text, len, from, to, q, err);
    } else if (k.root->data.mapping.style == YAML_FLOW_MAPPING_STYLE) {
        size_t at = char_to_byte(text, len, k.root->start_mark.index);
        if (at >= len || text[at] != '{') {
            moat_error_set(err, MOAT_E_INVALID, "kubelet config: cannot find the mapping's {");
            goto done;
        }
        moat_strbuf_appendf(&b, "\"" CRI_ENDPOINT_KEY "\": ");
        if (quote_value(&b, endpoint, err) < 0)
            goto done;
        if (k.first_key)
            moat_strbuf_appendf(&b, ", ");
        bool trunc = b.truncated;
        _cleanup_free_ char *ins = moat_strbuf_take(&b);
        if (!ins || trunc) {
            moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            goto done;
        }
        r = text_splice(&result, text, len, at + 1, at + 1, ins, err);
    } else {
        if (!k.first_key) {
            moat_error_set(err, MOAT_E_INVALID, "kubelet config: an empty mapping");
            goto done;
        }
        size_t key_at = char_to_byte(text, len, k.first_key->start_mark.index);
        size_t line = key_at;
        while (line > 0 && text[line - 1] != '\n')
            line--;
        for (size_t i = line; i < key_at; i++)
            if (text[i] != ' ') {
                moat_error_set(err, MOAT_E_INVALID,
                               "kubelet config: the first key does not "
                               "start its line");
                goto done;
            }
        moat_strbuf_appendf(&b, "%.*s" CRI_ENDPOINT_KEY ": ", (int)(key_at - line), text + line);
        if (quote_value(&b, endpoint, err) < 0)
            goto done;
        moat_strbuf_appendf(&b, "\n");
        bool trunc = b.truncated;
        _cleanup_free_ char *ins = moat_strbuf_take(&b);
        if (!ins || trunc) {
            moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            goto done;
        }
        r = text_splice(&result, text, len, line, line, ins, err);
    }
done:
    free(moat_strbuf_take(&b));
    kubelet_doc_clear(&k);
    if (r < 0)
        return -1;
    if (!result) /* every branch that returns 0 spliced a result */
        return moat_error_set(err, MOAT_E_INVALID, "kubelet config: nothing was edited");
    /* Check the edit says what was meant: the same parser reads the endpoint back. */
    _cleanup_free_ char *back = NULL;
    moat_error e = MOAT_ERROR_INIT;
    if (iso_kubelet_config_get_endpoint(&back, result, strlen(result), &e) < 0 || !back ||
        strcmp(back, endpoint) != 0) {
        moat_error_clear(&e);
        free(result);
        return moat_error_set(err, MOAT_E_INVALID,
                              "kubelet config: the edited file does not "
                              "read back as " CRI_ENDPOINT_KEY " = %s",
                              endpoint);
    }
    *out = result;
    return 0;
}

int iso_kubelet_flags_set_endpoint(char **out, bool *ret_found, const char *text, size_t len,
                                   const char *endpoint, moat_error *err)
{
    moat_strbuf b = {0};
    bool found = false;
    size_t i = 0, fl = strlen(CRI_ENDPOINT_FLAG);
    while (i < len) {
        const char *hit = memmem(text + i, len - i, CRI_ENDPOINT_FLAG, fl);
        size_t at = hit ? (size_t)(hit - text) + fl : len;
        bool whole = hit && (at == len || text[at] == '=' || text[at] == ' ' || text[at] == '\t');
        if (!whole) {
            moat_strbuf_appendf(&b, "%.*s", (int)(at - i), text + i);
            i = at;
            continue;
        }
        size_t v = at;
        while (v < len && (text[v] == '=' || text[v] == ' ' || text[v] == '\t'))
            v++;
        size_t e = v;
        while (e < len && text[e] != ' ' && text[e] != '\t' && text[e] != '\n' && text[e] != '"' &&
               text[e] != '\'')
            e++;
        moat_strbuf_appendf(&b, "%.*s%s", (int)(v - i), text + i, endpoint);
        found = true;
        i = e;
    }
    bool trunc = b.truncated;
    char *r = moat_strbuf_take(&b);
    if (!r || trunc) {
        free(r);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = r;
    *ret_found = found;
    return 0;
}
