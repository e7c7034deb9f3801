#include "textfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "strbuf.h"

int moat_read_text(char **ret, size_t *ret_len, const char *path, size_t max, moat_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return moat_error_set_errno(err, errno, "%s", path);

    moat_strbuf b = {.max = max + 1}; /* max bytes and the NUL */
    char chunk[8192];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            moat_strbuf_free(&b);
            return moat_error_set_errno(err, errno, "%s", path);
        }
        if (r == 0)
            break;
        if (moat_strbuf_append(&b, chunk, (size_t)r) < 0) {
            bool over = b.over_cap;
            moat_strbuf_free(&b);
            if (!over)
                return moat_error_set(err, MOAT_E_NOMEM, "%s: out of memory", path);
            return max % (1024 * 1024) == 0
                       ? moat_error_set(err, MOAT_E_NOMEM, "%s: larger than %zu MiB", path,
                                        max / (1024 * 1024))
                       : moat_error_set(err, MOAT_E_NOMEM, "%s: larger than %zu bytes", path, max);
        }
    }
    if (!(*ret = moat_strbuf_take_len(&b, ret_len)))
        return moat_error_set(err, MOAT_E_NOMEM, "%s: out of memory", path);
    return 0;
}

int moat_yaml_error(const yaml_parser_t *p, moat_error *err)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory parsing YAML");
    case YAML_READER_ERROR:
        return moat_error_set(err, MOAT_E_INVALID, "byte %zu: %s", p->problem_offset, problem);
    default:
        if (p->context)
            return moat_error_set(err, MOAT_E_INVALID, "line %zu, column %zu: %s (%s at line %zu)",
                                  p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                                  p->context, p->context_mark.line + 1);
        return moat_error_set(err, MOAT_E_INVALID, "line %zu, column %zu: %s",
                              p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
    }
}

/* libyaml frees without zeroing: for secret text, what the parser and the document hold is
 * zeroed first. (The scanner's intermediate string buffers are freed inside libyaml and
 * cannot be reached.) */
static void parser_destroy(yaml_parser_t *p, bool secret)
{
    if (secret) {
        if (p->buffer.start)
            explicit_bzero(p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
        if (p->raw_buffer.start)
            explicit_bzero(p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
        for (yaml_token_t *t = p->tokens.head; t && t < p->tokens.tail; t++)
            if (t->type == YAML_SCALAR_TOKEN && t->data.scalar.value)
                explicit_bzero(t->data.scalar.value, t->data.scalar.length);
    }
    yaml_parser_delete(p);
}

void moat_yaml_document_destroy(yaml_document_t *doc, bool secret)
{
    for (yaml_node_t *n = doc->nodes.start; secret && n && n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
            explicit_bzero(n->data.scalar.value, n->data.scalar.length);
    yaml_document_delete(doc);
}

int moat_yaml_load(yaml_document_t *doc, const char *text, size_t len, bool secret, moat_error *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
    if (!yaml_parser_load(&parser, doc)) {
        moat_yaml_error(&parser, err);
        parser_destroy(&parser, secret);
        return -1;
    }
    yaml_document_t extra;
    int r = 0;
    if (!yaml_parser_load(&parser, &extra)) {
        r = moat_yaml_error(&parser, err);
    } else {
        if (yaml_document_get_root_node(&extra))
            r = moat_error_set(err, MOAT_E_INVALID, "more than one YAML document");
        moat_yaml_document_destroy(&extra, secret);
    }
    parser_destroy(&parser, secret);
    if (r < 0)
        moat_yaml_document_destroy(doc, secret);
    return r;
}

int moat_yaml_load_one(yaml_document_t *doc, const char *text, size_t len, moat_error *err)
{
    return moat_yaml_load(doc, text, len, false, err);
}

bool moat_yaml_is_null(const yaml_node_t *n)
{
    if (!n)
        return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < ELEMENTSOF(nulls); i++)
        if (n->data.scalar.length == strlen(nulls[i]) &&
            memcmp(n->data.scalar.value, nulls[i], n->data.scalar.length) == 0)
            return true;
    return false;
}

const char *moat_yaml_type_name(const yaml_node_t *n)
{
    if (!n)
        return "nothing";
    return n->type == YAML_MAPPING_NODE    ? "a mapping"
           : n->type == YAML_SEQUENCE_NODE ? "a sequence"
                                           : "a string";
}

const char *moat_yaml_scalar_text(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    return strlen(s) == n->data.scalar.length ? s : NULL;
}
