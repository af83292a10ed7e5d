/*
 * files.c: file operations and the process list, performed by soulbox-init inside the
 * sandbox as uid 1000 with no capabilities.  Confinement is the kernel's: after pivot_root
 * there is nothing of the host to reach except read-only binds, so "..", absolute paths and
 * planted symlinks resolve inside the sandbox like they would for the user's own code; we do
 * no string checks on paths beyond refusing NUL bytes (frame.c) and empty paths.
 *
 * Invariants: init never blocks on a file: opens use O_NONBLOCK and anything that is not a
 * regular file is refused for read/write (a FIFO or a device would stall the whole sandbox);
 * listings and recursive removal never follow symlinks and are bounded in depth and count.
 */
#include "init.h"

#include "base/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILES_LIST_MAX 10000
#define FILES_DEPTH_MAX 32

static char *
files_path(sb_str_t s)
{
    if (s.len == 0)
        return NULL;
    return sb_str_dup(s); /* relative paths resolve against /home/user (init's cwd) */
}

static int
files_type(mode_t m)
{
    return S_ISREG(m) ? 1 : S_ISDIR(m) ? 2 : S_ISLNK(m) ? 3 : 4;
}

static void
files_begin(sb_buf_t *out, size_t *at, uint64_t id, uint32_t extra)
{
    *at = sb_frame_begin(out);
    sb_mpw_map(out, 3 + extra);
    sb_mpw_kuint(out, "t", SB_IF_REPLY);
    sb_mpw_kuint(out, "id", id);
    sb_mpw_kint(out, "err", 0);
}

static void
files_err(sb_buf_t *out, uint64_t id, int err)
{
    size_t at = sb_frame_begin(out);
    sb_mpw_map(out, 3);
    sb_mpw_kuint(out, "t", SB_IF_REPLY);
    sb_mpw_kuint(out, "id", id);
    sb_mpw_kint(out, "err", err);
    sb_frame_end(out, at);
}

static int
files_mkdir_p(char *path, mode_t mode, int include_last)
{
    size_t n = strlen(path);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        if (path[i] == 0 && !include_last)
            break;
        char c = path[i];
        path[i] = 0;
        if (mkdir(path, mode) < 0 && errno != EEXIST) {
            path[i] = c;
            return -errno;
        }
        path[i] = c;
    }
    return 0;
}

static int
files_rm_at(int dfd, const char *name, int depth)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0) < 0 ? -errno : 0;
    if (depth > FILES_DEPTH_MAX * 8)
        return -ELOOP;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if ((rc = files_rm_at(dirfd(d), e->d_name, depth + 1)) < 0)
            break;
    }
    closedir(d);
    if (rc < 0)
        return rc;
    return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

typedef struct {
    sb_buf_t *out;
    uint32_t count;
} files_list_t;

static void
files_entry(sb_buf_t *b, const char *path, const struct stat *st)
{
    sb_mpw_map(b, 5);
    sb_mpw_kstr(b, "path", path, strlen(path));
    sb_mpw_kuint(b, "type", (uint64_t)files_type(st->st_mode));
    sb_mpw_kuint(b, "size", (uint64_t)st->st_size);
    sb_mpw_kint(b, "mode", st->st_mode & 07777);
    sb_mpw_kuint(b, "mtime", (uint64_t)st->st_mtime);
}

static int
files_walk(sb_buf_t *ents, uint32_t *count, const char *dir, int depth, int maxdepth)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && *count < FILES_LIST_MAX) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", e->d_name) >=
            (int)sizeof path)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        files_entry(ents, path, &st);
        (*count)++;
        if (S_ISDIR(st.st_mode) && depth + 1 < maxdepth)
            files_walk(ents, count, path, depth + 1, maxdepth);
    }
    closedir(d);
    return rc;
}

void
sbi_file_op(const sb_frame_t *f, sb_buf_t *out)
{
    char *path = files_path(f->path);
    size_t at;
    int rc = 0;
    struct stat st;
    if (!path) {
        files_err(out, f->id, SB_EINVAL);
        return;
    }
    switch (f->t) {
    case SB_IF_FREAD: {
        uint64_t max = f->max && f->max < SB_FRAME_DATA_MAX ? f->max : SB_FRAME_DATA_MAX;
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            break;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
            close(fd);
            break;
        }
        uint64_t want = (uint64_t)st.st_size < max ? (uint64_t)st.st_size : max;
        uint8_t *buf = malloc(want ? want : 1);
        size_t got = 0;
        while (buf && got < want) {
            ssize_t n = read(fd, buf + got, want - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        close(fd);
        if (!buf) {
            rc = SB_ENOMEM;
            break;
        }
        files_begin(out, &at, f->id, 2);
        sb_mpw_kbin(out, "data", buf, got);
        sb_mpw_kuint(out, "size", (uint64_t)st.st_size);
        sb_frame_end(out, at);
        free(buf);
        free(path);
        return;
    }
    case SB_IF_FWRITE: {
        if ((rc = files_mkdir_p(path, 0755, 0)) < 0)
            break;
        mode_t mode = f->mode > 0 ? (mode_t)(f->mode & 0777) : 0644;
        int fl = O_WRONLY | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC |
                 (f->append ? O_APPEND : O_TRUNC);
        /* O_TRUNC would truncate a FIFO/device before we could refuse it: open without it
         * for the type check, then truncate the regular file through the fd. */
        int fd = open(path, fl & ~O_TRUNC, mode);
        if (fd < 0) {
            rc = -errno;
            break;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            rc = -EINVAL;
            close(fd);
            break;
        }
        if (!f->append && ftruncate(fd, 0) < 0) {
            rc = -errno;
            close(fd);
            break;
        }
        size_t off = 0;
        while (off < f->data.len) {
            ssize_t n = write(fd, f->data.ptr + off, f->data.len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                rc = n < 0 ? -errno : -EIO;
                break;
            }
            off += (size_t)n;
        }
        close(fd);
        if (rc < 0)
            break;
        files_begin(out, &at, f->id, 1);
        sb_mpw_kuint(out, "size", off);
        sb_frame_end(out, at);
        free(path);
        return;
    }
    case SB_IF_FSTAT:
        if (lstat(path, &st) < 0) {
            rc = -errno;
            break;
        }
        files_begin(out, &at, f->id, 4);
        sb_mpw_kuint(out, "type", (uint64_t)files_type(st.st_mode));
        sb_mpw_kuint(out, "size", (uint64_t)st.st_size);
        sb_mpw_kint(out, "mode", st.st_mode & 07777);
        sb_mpw_kuint(out, "mtime", (uint64_t)st.st_mtime);
        sb_frame_end(out, at);
        free(path);
        return;
    case SB_IF_FLIST: {
        int depth = f->depth > 0 ? (int)(f->depth < FILES_DEPTH_MAX ? f->depth : FILES_DEPTH_MAX) : 1;
        if (stat(path, &st) < 0) {
            rc = -errno;
            break;
        }
        if (!S_ISDIR(st.st_mode)) {
            rc = -ENOTDIR;
            break;
        }
        sb_buf_t ents;
        uint32_t count = 0;
        sb_buf_init(&ents, SB_FRAME_DATA_MAX);
        files_walk(&ents, &count, path, 0, depth);
        files_begin(out, &at, f->id, 1);
        sb_mpw_cstr(out, "ents");
        sb_mpw_array(out, count);
        sb_buf_append(out, ents.data, ents.len);
        sb_frame_end(out, at);
        sb_buf_fini(&ents);
        free(path);
        return;
    }
    case SB_IF_MKDIR:
        rc = files_mkdir_p(path, f->mode > 0 ? (mode_t)(f->mode & 0777) : 0755, 1);
        break;
    case SB_IF_REMOVE:
        rc = files_rm_at(AT_FDCWD, path, 0);
        break;
    case SB_IF_RENAME: {
        char *to = files_path(f->path2);
        if (!to) {
            rc = SB_EINVAL;
            break;
        }
        rc = rename(path, to) < 0 ? -errno : 0;
        free(to);
        break;
    }
    default: rc = SB_EUNKNOWN_TYPE;
    }
    free(path);
    files_err(out, f->id, rc);
}

void
sbi_ps(const sb_frame_t *f, sb_buf_t *out)
{
    sb_buf_t ents;
    uint32_t count = 0;
    size_t at;
    sb_buf_init(&ents, 1u << 20);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && count < 4096) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char p[64], buf[4096];
        snprintf(p, sizeof p, "/proc/%ld/stat", pid);
        FILE *fp = fopen(p, "re");
        if (!fp)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[n] = 0;
        /* pid (comm) state ppid ...: comm may hold spaces and parens, so find the last ')'. */
        char *rp = strrchr(buf, ')');
        char state[2] = "?";
        long ppid = 0;
        if (rp && rp[1] == ' ') {
            state[0] = rp[2];
            ppid = strtol(rp + 4, NULL, 10);
        }
        snprintf(p, sizeof p, "/proc/%ld/cmdline", pid);
        fp = fopen(p, "re");
        n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
        if (fp)
            fclose(fp);
        for (size_t i = 0; i + 1 < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        if (n && !buf[n - 1])
            n--;
        sb_mpw_map(&ents, 4);
        sb_mpw_kint(&ents, "pid", pid);
        sb_mpw_kint(&ents, "ppid", ppid);
        sb_mpw_kstr(&ents, "state", state, 1);
        sb_mpw_kstr(&ents, "cmd", buf, n);
        count++;
    }
    if (d)
        closedir(d);
    files_begin(out, &at, f->id, 1);
    sb_mpw_cstr(out, "ents");
    sb_mpw_array(out, count);
    sb_buf_append(out, ents.data, ents.len);
    sb_frame_end(out, at);
    sb_buf_fini(&ents);
}
