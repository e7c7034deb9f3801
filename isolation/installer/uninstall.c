/* The node installer's uninstall: kubelet's files back, Moat's block out of containerd's
 * config, the services restarted and checked, moat-cri and its wall removed, every file
 * the installer made deleted and every one it replaced restored (install-internal.h). */
#include "install-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int restore_or_remove(install_ctx *c, const char *hostpath, bool *changed, moat_error *err)
{
    _cleanup_free_ char *path = install_host(c, hostpath), *bp = install_backup_path(c, hostpath);
    if (!path || !bp)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    _cleanup_free_ char *orig = NULL;
    size_t len;
    bool exists;
    if (install_read_file(&orig, &len, &exists, bp, BUNDLE_MAX, err) < 0)
        return -1;
    *changed = false;
    if (exists) {
        struct stat st;
        unsigned mode = stat(bp, &st) == 0 ? st.st_mode & 07777 : 0644;
        if (iso_install_file_put(path, orig, len, mode, changed, err) < 0)
            return -1;
        if (*changed)
            install_report_add(c->rep, "restored %s", hostpath);
        /* The backup stays until the uninstall has finished: a run that fails later and is
         * run again must still know the file was the host's (not remove it as Moat's). */
        return 0;
    }
    if (unlink(path) == 0) {
        *changed = true;
        install_report_add(c->rep, "removed %s", hostpath);
    } else if (errno != ENOENT) {
        return moat_error_set_errno(err, errno, "unlink %s", hostpath);
    }
    return 0;
}

static bool is_entry(const char *entry, char kind, const char *hostpath)
{
    return hostpath && entry[0] == kind && strcmp(entry + 2, hostpath) == 0;
}

int iso_install_uninstall(iso_install_report *rep, const iso_install_options *o,
                          const iso_service_ops *svc, const iso_install_checks *chk,
                          moat_error *err)
{
    install_ctx c;
    int r = install_ctx_open(&c, o, rep, err);
    if (r < 0) {
        install_ctx_clear(&c);
        return -1;
    }
    /* 1. kubelet's files back (kubelet restarted in 3). */
    bool kubelet = false, ch = false;
    for (size_t i = 0; r == 0 && i < c.n; i++)
        if (is_entry(c.entries[i], 'f', o->kubelet_config) ||
            is_entry(c.entries[i], 'f', o->kubelet_flags)) {
            r = restore_or_remove(&c, c.entries[i] + 2, &ch, err);
            kubelet = kubelet || ch;
        }
    /* 2. containerd: Moat's block out of the file as it is now (keeps what others changed
     * since), which is the original when nobody did. Restarted before kubelet, so that the
     * new kubelet finds a containerd that answers (a kubelet that cannot validate its
     * runtime at startup exits). */
    bool cd = false;
    for (size_t i = 0; r == 0 && i < c.n; i++) {
        if (!is_entry(c.entries[i], 'f', o->containerd_config))
            continue;
        _cleanup_free_ char *path = install_host(&c, o->containerd_config), *text = NULL,
                            *out = NULL;
        _cleanup_free_ char *bp = install_backup_path(&c, o->containerd_config);
        size_t len;
        bool exists;
        if (!path || !bp) {
            r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        } else if ((r = install_read_file(&text, &len, &exists, path, ISO_CONTAINERD_MAX_CONFIG,
                                          err)) == 0 &&
                   exists) {
            if ((r = iso_containerd_unmerge(&out, text, len, err)) == 0) {
                struct stat st;
                unsigned mode = stat(path, &st) == 0 ? st.st_mode & 07777 : 0644;
                r = iso_install_file_put(path, out, strlen(out), mode, &cd, err);
                if (r == 0 && cd)
                    install_report_add(rep, "removed Moat's block from %s", o->containerd_config);
                unlink(bp);
            }
        }
    }
    if (r == 0 && (cd || install_pending(&c, o->containerd_service)))
        r = install_restart_containerd(&c, svc, chk, err);
    /* 3. kubelet on containerd again, then moat-cri gone. */
    if (r == 0 && (kubelet || install_pending(&c, o->kubelet_service)))
        r = install_restart(&c, svc, o->kubelet_service, err);
    bool cri_gone = false;
    if (r == 0 && (r = svc->undefine(svc->impl, o->cri_service, &ch, err)) == 0 && ch) {
        install_report_add(rep, "stopped and removed service %s", o->cri_service);
        cri_gone = true;
        if (rep)
            rep->restarts++;
    }
    /* moat-cri leaves its wall in the kernel on purpose (its restarts keep running pods
     * walled); with moat-cri gone it goes too. Asked every time (no table is no change), so
     * a run that failed here is finished by the next one. */
    if (r == 0 && o->cri_wall_table) {
        if ((r = chk->remove_wall(chk->impl, o->cri_wall_table, err)) < 0)
            moat_error_prefix(err, "removing moat-cri's egress wall");
        else if (cri_gone)
            install_report_add(rep, "removed nftables table inet %s (moat-cri's egress wall)",
                               o->cri_wall_table);
    }
    /* 4. every other file, then the directories, deepest first. */
    for (size_t i = 0; r == 0 && i < c.n; i++)
        if (c.entries[i][0] == 'f' && !is_entry(c.entries[i], 'f', o->kubelet_config) &&
            !is_entry(c.entries[i], 'f', o->kubelet_flags) &&
            !is_entry(c.entries[i], 'f', o->containerd_config))
            r = restore_or_remove(&c, c.entries[i] + 2, &ch, err);
    if (r == 0) {
        _cleanup_free_ char *manifest = NULL, *backup = NULL;
        if (asprintf(&manifest, "%s/manifest", c.state) < 0 ||
            asprintf(&backup, "%s/backup", c.state) < 0) {
            r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < c.n; i++) {
                _cleanup_free_ char *bp =
                    c.entries[i][0] == 'f' ? install_backup_path(&c, c.entries[i] + 2) : NULL;
                if (bp)
                    unlink(bp);
            }
            unlink(manifest);
            const char *names[] = {o->containerd_service, o->cri_service, o->kubelet_service};
            for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *m = install_pending_path(&c, names[i]);
                if (m)
                    unlink(m);
            }
            if (rmdir(backup) < 0 && errno != ENOENT)
                r = moat_error_set_errno(err, errno, "rmdir %s", backup);
            for (size_t i = c.n; r == 0 && i-- > 0;) {
                if (c.entries[i][0] != 'd')
                    continue;
                _cleanup_free_ char *d = install_host(&c, c.entries[i] + 2);
                if (d && rmdir(d) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST)
                    r = moat_error_set_errno(err, errno, "rmdir %s", c.entries[i] + 2);
            }
        }
    }
    if (r == 0 && kubelet &&
        chk->healthy(chk->impl, o->kubelet_healthz, o->kubelet_timeout_ms, o->kubelet_settle_ms,
                     err) < 0)
        r = moat_error_prefix(err, "kubelet is not healthy on containerd after the uninstall");
    install_ctx_clear(&c);
    return r;
}
