#include "kobj.h"

#include <stdio.h>
#include <string.h>

json_t *kobj_get(const json_t *obj, const char *path)
{
    const json_t *cur = obj;
    const char *p = path;
    while (cur && p) {
        if (!json_is_object(cur))
            return NULL;
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        cur = json_object_getn(cur, p, len);
        p = dot ? dot + 1 : NULL;
    }
    return json_is_null(cur) ? NULL : (json_t *)cur;
}

const char *kobj_str(const json_t *obj, const char *path)
{
    return json_string_value(kobj_get(obj, path)); /* NULL for non-strings */
}

bool kobj_int(const json_t *obj, const char *path, int64_t *out)
{
    json_t *v = kobj_get(obj, path);
    if (!json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return true;
}

bool kobj_bool(const json_t *obj, const char *path, bool def)
{
    json_t *v = kobj_get(obj, path);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

const char *kobj_name(const json_t *obj)
{
    return kobj_str(obj, "metadata.name");
}

const char *kobj_namespace(const json_t *obj)
{
    return kobj_str(obj, "metadata.namespace");
}

const char *kobj_uid(const json_t *obj)
{
    return kobj_str(obj, "metadata.uid");
}

const char *kobj_resource_version(const json_t *obj)
{
    return kobj_str(obj, "metadata.resourceVersion");
}

const char *kobj_label(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(kobj_get(obj, "metadata.labels"), key));
}

const char *kobj_annotation(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(kobj_get(obj, "metadata.annotations"), key));
}

char *kobj_key(const json_t *obj)
{
    const char *name = kobj_name(obj), *ns = kobj_namespace(obj);
    char *key = NULL;
    if (!name)
        return NULL;
    if (ns && *ns) {
        if (asprintf(&key, "%s/%s", ns, name) < 0)
            return NULL;
        return key;
    }
    return strdup(name);
}

const json_t *kobj_condition(const json_t *obj, const char *path, const char *type)
{
    json_t *all = kobj_get(obj, path), *cond;
    size_t i;
    json_array_foreach (all, i, cond) {
        const char *t = kobj_str(cond, "type");
        if (t && type && strcmp(t, type) == 0)
            return cond;
    }
    return NULL;
}
