/* Reading the small text files daemons are configured with, and reporting YAML syntax
 * errors the same way everywhere. */
#ifndef MOAT_TEXTFILE_H
#define MOAT_TEXTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "error.h"

/* Reads all of path, at most max bytes, NUL-terminated. Returns 0 with *ret (caller frees)
 * and *ret_len, or -1: MOAT_E_IO (cannot open or read; errno's text), MOAT_E_NOMEM (larger
 * than max, or out of memory). Messages start with the path. */
int moat_read_text(char **ret, size_t *ret_len, const char *path, size_t max, moat_error *err);

/* Turns a libyaml parser's error into err ("line 3, column 2: did not find expected key
 * (while parsing a block mapping at line 1)"); returns -1. */
int moat_yaml_error(const yaml_parser_t *parser, moat_error *err);

/* Parses text as exactly one YAML document into *doc (the caller yaml_document_delete()s
 * it): a second document, which a reader stopping at the first would silently ignore, is
 * refused. Returns 0, or -1 with MOAT_E_INVALID (syntax: line and column) or MOAT_E_NOMEM. */
int moat_yaml_load_one(yaml_document_t *doc, const char *text, size_t len, moat_error *err);

/* The same; with secret, everything the parser held of the text is zeroed before it is
 * freed (a kubeconfig's keys and tokens), and the document must be freed with
 * moat_yaml_document_destroy(doc, true). */
int moat_yaml_load(yaml_document_t *doc, const char *text, size_t len, bool secret,
                   moat_error *err);

/* yaml_document_delete, zeroing every scalar first when secret. */
void moat_yaml_document_destroy(yaml_document_t *doc, bool secret);

/* YAML's null: an absent node, or an empty or "~"/"null" plain scalar. */
bool moat_yaml_is_null(const yaml_node_t *n);

/* "a mapping", "a sequence", "a string" (or "nothing" for NULL), for error messages. */
const char *moat_yaml_type_name(const yaml_node_t *n);

/* A scalar's text (libyaml NUL-terminates it); NULL when a NUL inside, possible with "\0" in
 * double quotes, would cut it short. */
const char *moat_yaml_scalar_text(const yaml_node_t *n);

#endif
