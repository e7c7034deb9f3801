/* The egress wall's real nftables backend (libnftables) and the removal of a wall's tables
 * (uninstall: moat-cri --remove-wall, moat-install's uninstall). wall.h is their contract. */
#include "wall.h"

#include <jansson.h>
#include <nftables/libnftables.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/macro.h"

static int nft_run(void *user, const char *commands, char **ret_json, moat_error *err)
{
    struct nft_ctx *ctx = user;
    /* Numbers, not names: a name would need /etc/protocols, which the bundle's chroot (and
     * a minimal node image) may lack, and the index compares element texts. */
    nft_ctx_output_set_flags(ctx,
                             NFT_CTX_OUTPUT_NUMERIC_ALL | (ret_json ? NFT_CTX_OUTPUT_JSON : 0));
    if (nft_ctx_buffer_output(ctx) < 0 || nft_ctx_buffer_error(ctx) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "nftables: out of memory");
    int rc = nft_run_cmd_from_buffer(ctx, commands);
    const char *out = nft_ctx_get_output_buffer(ctx);
    const char *msg = nft_ctx_get_error_buffer(ctx);
    int r = 0;
    if (rc != 0) {
        /* nft's message ends with the offending command and a caret line: keep line one. */
        size_t len = msg ? strcspn(msg, "\n") : 0;
        r = moat_error_set(err, MOAT_E_IO, "nftables: %.*s", (int)len,
                           len ? msg : "the command failed");
    } else if (ret_json) {
        *ret_json = strdup(out ? out : "");
        if (!*ret_json)
            r = moat_error_set(err, MOAT_E_NOMEM, "nftables: out of memory");
    }
    nft_ctx_unbuffer_output(ctx);
    nft_ctx_unbuffer_error(ctx);
    return r;
}

int iso_nft_open(iso_nft *out, moat_error *err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx)
        return moat_error_set(err, MOAT_E_NOMEM, "nftables: no context");
    *out = (iso_nft){nft_run, ctx};
    return 0;
}

void iso_nft_close(iso_nft *n)
{
    if (n && n->user)
        nft_ctx_free(n->user);
    if (n)
        *n = (iso_nft){0};
}

int iso_wall_delete(const iso_nft *nft, const char *table, moat_error *err)
{
    if (!iso_wall_table_valid(table))
        return moat_error_set(err, MOAT_E_INVALID, "egress wall: table \"%s\" is not valid",
                              table ? table : "");
    _cleanup_free_ char *list = NULL;
    if (nft->run(nft->user, "list tables", &list, err) < 0)
        return moat_error_prefix(err, "egress wall: listing tables");
    json_t *doc _cleanup_(json_decrefp) = json_loads(list, 0, NULL);
    static const char *const families[] = {"inet", "netdev"};
    for (size_t f = 0; f < ELEMENTSOF(families); f++) {
        size_t i;
        json_t *item;
        bool present = false;
        json_array_foreach (json_object_get(doc, "nftables"), i, item) {
            json_t *t = json_object_get(item, "table");
            const char *name = json_string_value(json_object_get(t, "name"));
            const char *family = json_string_value(json_object_get(t, "family"));
            present |=
                name && family && strcmp(name, table) == 0 && strcmp(family, families[f]) == 0;
        }
        if (!present)
            continue;
        _cleanup_free_ char *cmd = NULL;
        if (asprintf(&cmd, "delete table %s %s", families[f], table) < 0)
            return moat_error_set(err, MOAT_E_NOMEM, "egress wall: out of memory");
        if (nft->run(nft->user, cmd, NULL, err) < 0)
            return moat_error_prefix(err, "egress wall: deleting table %s %s", families[f], table);
    }
    return 0;
}
