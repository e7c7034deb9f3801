/* One loader for Moat's YAML configuration files (the operator's, moat-cri's): a table of
 * dotted keys, each a section (a mapping of further keys), a scalar, a list or a map. The
 * walk refuses, naming the key, what the table does not know, a key given twice, and a
 * value of the wrong shape; a key given as null keeps its default. What a value means is
 * the program's: the table's setters get the text.
 *
 * Error messages: "defaults.cpuu: unknown key", "defaults.cpu: duplicate key",
 * "defaults: expected a mapping, found a string", "egressWall.clusterCIDRs[2]: expected a
 * non-empty string", "expected a mapping at the top level, found a sequence"; a scalar
 * setter's error gets the key in front. */
#ifndef MOAT_SETTINGS_H
#define MOAT_SETTINGS_H

#include <stddef.h>

#include "error.h"

typedef enum {
    MOAT_SETTING_SECTION,
    MOAT_SETTING_SCALAR,
    MOAT_SETTING_LIST, /* a sequence of non-empty strings, maybe empty */
    MOAT_SETTING_MAP,  /* a mapping of non-empty, distinct strings to strings (null: "") */
} moat_setting_shape;

typedef struct {
    size_t n;                              /* keys in the program's table */
    const char *(*path)(size_t i);         /* key i, dotted: "egressWall.table" */
    moat_setting_shape (*shape)(size_t i); /* ... and its shape */
    const char *map_key_noun;              /* in map errors: "a label name is empty" */
    /* Setters, called on the value of key i; they may take the vectors they are handed
     * (setting *items to NULL), else they are freed. A list or map setter's errors name the
     * key (and index) themselves; a scalar setter's get the key in front. */
    int (*scalar)(void *user, size_t i, const char *text, moat_error *err);
    int (*list)(void *user, size_t i, char ***items, size_t n_items, moat_error *err);
    int (*map)(void *user, size_t i, char ***keys, char ***values, size_t n_pairs, moat_error *err);
    void *user;
} moat_settings;

/* Walks text (one YAML document; empty: nothing to set) through the table. */
int moat_settings_parse(const moat_settings *s, const char *text, size_t len, moat_error *err);

/* The index of the key at path, or -1. */
int moat_settings_find(const moat_settings *s, const char *path);

#endif
