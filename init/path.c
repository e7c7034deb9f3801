#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "init/path.h"

size_t path_base(const char *path, const char **ret_start)
{
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/')
        end--;
    if (end == 1 && path[0] == '/') {
        *ret_start = path;
        return 1;
    }
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    *ret_start = path + start;
    return end - start;
}

int path_buf_init(path_buf *b, const char *root)
{
    size_t len = strlen(root);
    if (len + 1 > PATH_BUF_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t cap = len + 1 < 256 ? 256 : len + 1;
    char *data = malloc(cap);
    if (!data)
        return -1;
    memcpy(data, root, len + 1);
    *b = (path_buf){.data = data, .len = len, .cap = cap};
    return 0;
}

int path_buf_push(path_buf *b, const char *name, size_t *ret_mark)
{
    size_t name_len = strlen(name);
    bool slash = b->len > 0 && b->data[b->len - 1] != '/';
    size_t need = b->len + slash + name_len + 1;
    if (need > PATH_BUF_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (need > b->cap) {
        size_t cap = b->cap * 2 > need ? b->cap * 2 : need;
        if (cap > PATH_BUF_MAX)
            cap = PATH_BUF_MAX;
        char *data = realloc(b->data, cap);
        if (!data)
            return -1;
        b->data = data;
        b->cap = cap;
    }
    *ret_mark = b->len;
    if (slash)
        b->data[b->len++] = '/';
    memcpy(b->data + b->len, name, name_len + 1);
    b->len += name_len;
    return 0;
}

void path_buf_pop(path_buf *b, size_t mark)
{
    b->len = mark;
    b->data[mark] = '\0';
}

void path_buf_done(path_buf *b)
{
    free(b->data);
    *b = (path_buf){0};
}
