/* Reading Kubernetes objects (jansson values) safely: a missing field, a null, or a field of
 * another type never crashes and never reads garbage; it is "absent". Paths are dotted
 * ("metadata.name", "status.containerStatuses"); a path component never contains a dot
 * (labels are read with kobj_label, not by path). Returned pointers borrow from the object
 * and live as long as it does. */
#ifndef MOAT_KOBJ_H
#define MOAT_KOBJ_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* The value at path, or NULL (absent, null, or a non-object on the way). Borrowed. */
json_t *kobj_get(const json_t *obj, const char *path);

/* The string at path, or NULL when absent or not a string. */
const char *kobj_str(const json_t *obj, const char *path);

/* The entry of the conditions list at path ("status.conditions", or "conditions" of a
 * status) whose type is type; NULL when there is none. Borrowed from obj. */
const json_t *kobj_condition(const json_t *obj, const char *path, const char *type);

/* Writes the integer at path to *out and returns true; false (out untouched) when absent or
 * not an integer. */
bool kobj_int(const json_t *obj, const char *path, int64_t *out);

/* The boolean at path, or def when absent or not a boolean. */
bool kobj_bool(const json_t *obj, const char *path, bool def);

const char *kobj_name(const json_t *obj);
const char *kobj_namespace(const json_t *obj); /* NULL for cluster-scoped objects */
const char *kobj_uid(const json_t *obj);
const char *kobj_resource_version(const json_t *obj);

/* metadata.labels[key] / metadata.annotations[key], or NULL. */
const char *kobj_label(const json_t *obj, const char *key);
const char *kobj_annotation(const json_t *obj, const char *key);

/* "namespace/name", or "name" for cluster-scoped objects; NULL without a name. Caller frees. */
char *kobj_key(const json_t *obj);

#endif
