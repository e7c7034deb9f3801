/* Kubernetes label selectors: the string syntax of labels.Parse in k8s.io/apimachinery, used
 * in list options (?labelSelector=) and in objects that name a set of Pods or Nodes. Labels
 * are jansson objects of string -> string, as in metadata.labels. */
#ifndef MOAT_SELECTOR_H
#define MOAT_SELECTOR_H

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

/* The longest selector text accepted, in bytes. It also bounds the canonical form
 * (kube_selector_string), so that form always parses again, and kube_selector_from_labels. */
#define KUBE_SELECTOR_MAX_LEN 4096
/* The most requirements (comma-separated terms) one selector may have. */
#define KUBE_SELECTOR_MAX_REQUIREMENTS 64

typedef struct kube_selector kube_selector; /* opaque, parsed */

/* Parses a selector: comma-separated requirements "k=v", "k==v", "k!=v", "k in (a,b)",
 * "k notin (a, b)", "k" (exists), "!k" (does not exist), and the integer comparisons "k>3",
 * "k<3" that labels.Parse also accepts. Whitespace (space, tab, CR, LF) is allowed around
 * tokens; an empty or blank text selects everything. Keys are [prefix/]name: the prefix a
 * DNS subdomain of at most 253 characters, the name at most 63 characters of [A-Za-z0-9._-]
 * starting and ending alphanumeric. Values follow the name's rules but may be empty.
 *
 * Returns 0 and writes *out (the caller frees it with kube_selector_free), or -1 with
 * MOAT_E_INVALID for a syntax or validation error, whose message quotes the text and gives
 * the 1-based byte position and the token found there:
 *     label selector "a in (b": position 8: expected ')'
 *     label selector "a=b c": position 5: found 'c', expected ',' or end of string
 * or MOAT_E_NOMEM when allocation fails or the text goes over KUBE_SELECTOR_MAX_LEN (also for
 * its canonical form) or KUBE_SELECTOR_MAX_REQUIREMENTS. */
int kube_selector_parse(kube_selector **out, const char *text, moat_error *err);

/* True when labels satisfy every requirement. labels is a JSON object of string -> string;
 * NULL or a JSON null means no labels. As in Kubernetes, "k!=v" and "k notin (...)" hold
 * when k is absent, and "k>n"/"k<n" need k's value to be an integer. A non-string value
 * never matches: any requirement on its key fails, whatever the operator. A labels value
 * that is neither an object nor null fails every requirement. A NULL selector matches
 * nothing. */
bool kube_selector_matches(const kube_selector *s, const json_t *labels);

/* The canonical text, as the API server's String(): requirements sorted by key (ties in a
 * fixed order of operator and values), set values sorted and deduplicated, no whitespace
 * except around "in"/"notin". It parses back to the same selector. The empty selector gives
 * "". The caller frees the result; NULL on OOM or for a NULL selector. */
char *kube_selector_string(const kube_selector *s);

/* "k1=v1,k2=v2" from a labels map, sorted by key, for list options. NULL or an empty map
 * gives "", which selects everything. The caller frees the result. NULL on OOM, and also
 * when labels is not an object or null, a value is not a string, a key or value is not
 * valid label syntax (a value such as "x,b=c" would otherwise change the selector's
 * meaning), or the result would not parse: more than KUBE_SELECTOR_MAX_REQUIREMENTS labels or
 * longer than KUBE_SELECTOR_MAX_LEN. */
char *kube_selector_from_labels(const json_t *labels);

/* Frees a selector; accepts NULL. */
void kube_selector_free(kube_selector *s);

#endif
