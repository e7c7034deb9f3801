#include "activity.h"

#include <stdlib.h>
#include <string.h>

bool moat_activity_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > MOAT_ACTIVITY_ID_MAX || id[0] == '.')
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

char *moat_activity_dir_for(const char *socket_path)
{
    const char *slash = strrchr(socket_path, '/');
    size_t n = slash ? (size_t)(slash - socket_path) : 1;
    const char *base = slash ? socket_path : ".";
    if (slash == socket_path)
        n = 0; /* a socket in / */
    char *dir = malloc(n + sizeof("/" MOAT_ACTIVITY_DIR_NAME));
    if (!dir)
        return NULL;
    memcpy(dir, base, n);
    memcpy(dir + n, "/" MOAT_ACTIVITY_DIR_NAME, sizeof("/" MOAT_ACTIVITY_DIR_NAME));
    return dir;
}
