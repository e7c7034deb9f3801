#include "settings.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "macro.h"
#include "strv.h"
#include "textfile.h"

typedef struct {
    const moat_settings *s;
    yaml_document_t *doc;
    bool *seen;
} walk;

static int walk_mapping(walk *w, const yaml_node_t *map, const char *prefix, moat_error *err);

int moat_settings_find(const moat_settings *s, const char *path)
{
    for (size_t i = 0; path && i < s->n; i++)
        if (strcmp(s->path(i), path) == 0)
            return (int)i;
    return -1;
}

/* The key named `key` (klen bytes, maybe with NULs) in the section at prefix ("" at the
 * top), or -1. */
static int find_child(const moat_settings *s, const char *prefix, const char *key, size_t klen)
{
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < s->n; i++) {
        const char *path = s->path(i);
        const char *dot = strrchr(path, '.');
        size_t parent_len = dot ? (size_t)(dot - path) : 0;
        const char *name = dot ? dot + 1 : path;
        if (parent_len == plen && memcmp(path, prefix, plen) == 0 && strlen(name) == klen &&
            memcmp(name, key, klen) == 0)
            return (int)i;
    }
    return -1;
}

static int take_list(walk *w, size_t id, const yaml_node_t *seq, moat_error *err)
{
    const char *path = w->s->path(id);
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    _cleanup_strv_ char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *item = yaml_document_get_node(w->doc, seq->data.sequence.items.start[i]);
        const char *text =
            item && item->type == YAML_SCALAR_NODE ? moat_yaml_scalar_text(item) : NULL;
        if (!text || !*text)
            return moat_error_set(err, MOAT_E_INVALID, "%s[%zu]: expected a non-empty string", path,
                                  i);
        if (!(v[i] = strdup(text)))
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    return w->s->list(w->s->user, id, &v, n, err);
}

static int sorted_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int take_map(walk *w, size_t id, const yaml_node_t *map, moat_error *err)
{
    const char *path = w->s->path(id), *noun = w->s->map_key_noun ? w->s->map_key_noun : "key";
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    _cleanup_strv_ char **keys = calloc(n + 1, sizeof(char *));
    _cleanup_strv_ char **values = calloc(n + 1, sizeof(char *));
    _cleanup_free_ char **sorted = calloc(n + 1, sizeof(char *));
    if (!keys || !values || !sorted)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const yaml_node_pair_t *p = &map->data.mapping.pairs.start[i];
        const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        const yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if (!k || k->type != YAML_SCALAR_NODE)
            return moat_error_set(err, MOAT_E_INVALID, "%s: a %s is %s, not a string", path, noun,
                                  moat_yaml_type_name(k));
        const char *key = moat_yaml_scalar_text(k);
        if (!key)
            return moat_error_set(err, MOAT_E_INVALID, "%s: a %s contains a NUL byte", path, noun);
        if (!*key)
            return moat_error_set(err, MOAT_E_INVALID, "%s: a %s is empty", path, noun);
        const char *value = "";
        if (!moat_yaml_is_null(v)) {
            if (v->type != YAML_SCALAR_NODE)
                return moat_error_set(err, MOAT_E_INVALID, "%s.%s: expected a string, found %s",
                                      path, key, moat_yaml_type_name(v));
            if (!(value = moat_yaml_scalar_text(v)))
                return moat_error_set(err, MOAT_E_INVALID, "%s.%s: contains a NUL byte", path, key);
        }
        if (!(keys[i] = strdup(key)) || !(values[i] = strdup(value)))
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        sorted[i] = keys[i];
    }
    qsort(sorted, n, sizeof(char *), sorted_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            return moat_error_set(err, MOAT_E_INVALID, "%s.%s: duplicate key", path, sorted[i]);
    return w->s->map(w->s->user, id, &keys, &values, n, err);
}

static int take_value(walk *w, size_t id, const yaml_node_t *v, moat_error *err)
{
    const char *path = w->s->path(id);
    /* Which of two values wins would be a guess. */
    if (w->seen[id])
        return moat_error_set(err, MOAT_E_INVALID, "%s: duplicate key", path);
    w->seen[id] = true;
    if (moat_yaml_is_null(v))
        return 0; /* "cpu:" alone keeps the default */
    moat_setting_shape shape = w->s->shape(id);
    bool mapping = shape == MOAT_SETTING_SECTION || shape == MOAT_SETTING_MAP;
    bool list = shape == MOAT_SETTING_LIST;
    yaml_node_type_t want = mapping ? YAML_MAPPING_NODE
                            : list  ? YAML_SEQUENCE_NODE
                                    : YAML_SCALAR_NODE;
    if (v->type != want)
        return moat_error_set(err, MOAT_E_INVALID, "%s: expected %s, found %s", path,
                              mapping ? "a mapping"
                              : list  ? "a list"
                                      : "a string",
                              moat_yaml_type_name(v));
    switch (shape) {
    case MOAT_SETTING_SECTION:
        return walk_mapping(w, v, path, err);
    case MOAT_SETTING_LIST:
        return take_list(w, id, v, err);
    case MOAT_SETTING_MAP:
        return take_map(w, id, v, err);
    case MOAT_SETTING_SCALAR:
        break;
    }
    const char *text = moat_yaml_scalar_text(v);
    if (!text)
        return moat_error_set(err, MOAT_E_INVALID, "%s: contains a NUL byte", path);
    if (w->s->scalar(w->s->user, id, text, err) < 0)
        return moat_error_prefix(err, "%s", path);
    return 0;
}

/* Takes every key of map, the section at prefix ("" at the top). Sections are as deep as
 * the table's paths, so an alias that makes a mapping contain itself cannot loop. */
static int walk_mapping(walk *w, const yaml_node_t *map, const char *prefix, moat_error *err)
{
    const char *sep = *prefix ? "." : "";
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE)
            return moat_error_set(err, MOAT_E_INVALID, "%s%sa key is %s, not a string", prefix,
                                  *prefix ? ": " : "", moat_yaml_type_name(k));
        const char *key = (const char *)k->data.scalar.value;
        size_t klen = k->data.scalar.length;
        int id = find_child(w->s, prefix, key, klen);
        if (id < 0)
            return moat_error_set(err, MOAT_E_INVALID, "%s%s%.*s: unknown key", prefix, sep,
                                  (int)klen, key);
        if (take_value(w, (size_t)id, yaml_document_get_node(w->doc, p->value), err) < 0)
            return -1;
    }
    return 0;
}

int moat_settings_parse(const moat_settings *s, const char *text, size_t len, moat_error *err)
{
    if (!text && len > 0)
        return moat_error_set(err, MOAT_E_INVALID, "no text");
    yaml_document_t doc;
    if (moat_yaml_load_one(&doc, text ? text : "", len, err) < 0)
        return -1;
    walk w = {s, &doc, calloc(s->n + 1, sizeof(bool))};
    int r = 0;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!w.seen)
        r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    else if (!moat_yaml_is_null(root)) { /* an empty file or document: every default */
        if (root->type != YAML_MAPPING_NODE)
            r = moat_error_set(err, MOAT_E_INVALID, "expected a mapping at the top level, found %s",
                               moat_yaml_type_name(root));
        else
            r = walk_mapping(&w, root, "", err);
    }
    free(w.seen);
    yaml_document_delete(&doc);
    return r;
}
