/*
 * files.c: file operations and the process list, performed by soulbox-init inside the
 * sandbox as uid 1000 with no capabilities.  Confinement is the kernel's: after pivot_root
 * there is nothing of the host to reach except read-only binds, so "..", absolute paths and
 * planted symlinks resolve inside the sandbox like they would for the user's own code; we do
 * no string checks on paths beyond refusing NUL bytes (the codec's PATH kind) and empty paths.
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
    return S_ISREG(m)   ? SB_IF_FILE_REGULAR
           : S_ISDIR(m) ? SB_IF_FILE_DIR
           : S_ISLNK(m) ? SB_IF_FILE_SYMLINK
                        : SB_IF_FILE_OTHER;
}

static void
files_err(sb_buf_t *out, uint64_t id, int err)
{
    sb_if_reply_write(out, &(sb_if_reply_t){.id = id, .err = err});
}

/* files_reply_ents answers with the count entries encoded in ents (a msgpack array). */
static void
files_reply_ents(sb_buf_t *out, uint64_t id, uint32_t count, const sb_buf_t *ents)
{
    sb_buf_t arr;
    sb_buf_init(&arr, 0);
    sb_mpw_array(&arr, count);
    sb_buf_append(&arr, ents->data, ents->len);
    sb_if_reply_t r = {.id = id, .ents = {(const char *)arr.data, (uint32_t)arr.len}};
    if (sb_if_reply_write(out, &r) != 0)
        files_err(out, id, SB_ETOOBIG);
    sb_buf_fini(&arr);
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

static int
files_entry(sb_buf_t *b, const char *path, const struct stat *st)
{
    sb_if_entry_t e = {.path = sb_str(path),
                       .type = (uint64_t)files_type(st->st_mode),
                       .size = (uint64_t)st->st_size,
                       .mode = st->st_mode & 07777,
                       .mtime = (uint64_t)st->st_mtime};
    return sb_if_entry_encode(b, &e);
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
        if (files_entry(ents, path, &st) != 0)
            break; /* the listing is as big as one frame can carry */
        (*count)++;
        if (S_ISDIR(st.st_mode) && depth + 1 < maxdepth)
            files_walk(ents, count, path, depth + 1, maxdepth);
    }
    closedir(d);
    return rc;
}

/* The fields of whichever file operation arrived. */
typedef struct {
    uint8_t t;
    uint64_t id, max, mode, depth;
    bool append;
    sb_str_t path, path2, data;
} files_op_t;

static int
files_decode(uint8_t t, const uint8_t *p, size_t n, files_op_t *o)
{
    memset(o, 0, sizeof *o);
    o->t = t;
    int rc = SB_EUNKNOWN_TYPE;
    switch (t) {
    case SB_IF_FREAD: {
        sb_if_fread_t f;
        if ((rc = sb_if_fread_decode(p, n, &f)) == 0)
            *o = (files_op_t){.t = t, .id = f.id, .path = f.path, .max = f.max};
        break;
    }
    case SB_IF_FWRITE: {
        sb_if_fwrite_t f;
        if ((rc = sb_if_fwrite_decode(p, n, &f)) == 0)
            *o = (files_op_t){.t = t, .id = f.id, .path = f.path, .data = f.data,
                              .mode = f.mode, .append = f.append};
        break;
    }
    case SB_IF_FLIST: {
        sb_if_flist_t f;
        if ((rc = sb_if_flist_decode(p, n, &f)) == 0)
            *o = (files_op_t){.t = t, .id = f.id, .path = f.path, .depth = f.depth};
        break;
    }
    case SB_IF_FSTAT: {
        sb_if_fstat_t f;
        if ((rc = sb_if_fstat_decode(p, n, &f)) == 0)
            *o = (files_op_t){.t = t, .id = f.id, .path = f.path};
        break;
    }
    case SB_IF_MKDIR: {
        sb_if_mkdir_t f;
        if ((rc = sb_if_mkdir_decode(p, n, &f)) == 0)
            *o = (files_op_t){.t = t, .id = f.id, .path = f.path, .mode = f.mode};
        break;
    }
    case SB_IF_REMOVE: {
        sb_if_remove_t f;
        if ((rc = sb_if_remove_decode(p, n, &f)) == 0)
            *o = (files_op_t){.t = t, .id = f.id, .path = f.path};
        break;
    }
    case SB_IF_RENAME: {
        sb_if_rename_t f;
        if ((rc = sb_if_rename_decode(p, n, &f)) == 0)
            *o = (files_op_t){.t = t, .id = f.id, .path = f.path, .path2 = f.path2};
        break;
    }
    }
    return rc;
}

void
sbi_file_op(uint8_t type, const uint8_t *body, size_t len, sb_buf_t *out)
{
    files_op_t op, *f = &op;
    if (files_decode(type, body, len, &op) != 0) {
        sb_if_error_write(out, &(sb_if_error_t){.err = SB_EBADMSG, .msg = SB_STR("malformed frame")});
        return;
    }
    char *path = files_path(f->path);
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
        sb_if_reply_t r = {.id = f->id, .data = {(const char *)buf, (uint32_t)got},
                           .size = (uint64_t)st.st_size};
        if (sb_if_reply_write(out, &r) != 0)
            files_err(out, f->id, SB_ETOOBIG);
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
        sb_if_reply_write(out, &(sb_if_reply_t){.id = f->id, .size = off});
        free(path);
        return;
    }
    case SB_IF_FSTAT:
        if (lstat(path, &st) < 0) {
            rc = -errno;
            break;
        }
        sb_if_reply_write(out, &(sb_if_reply_t){.id = f->id,
                                                .type = (uint64_t)files_type(st.st_mode),
                                                .size = (uint64_t)st.st_size,
                                                .mode = st.st_mode & 07777,
                                                .mtime = (uint64_t)st.st_mtime});
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
        files_reply_ents(out, f->id, count, &ents);
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
sbi_ps(uint64_t id, sb_buf_t *out)
{
    sb_buf_t ents;
    uint32_t count = 0;
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
        sb_if_entry_t en = {.pid = (uint64_t)pid, .ppid = (uint64_t)(ppid > 0 ? ppid : 0),
                            .state = {state, 1}, .cmd = {buf, (uint32_t)n}};
        if (sb_if_entry_encode(&ents, &en) != 0)
            break;
        count++;
    }
    if (d)
        closedir(d);
    files_reply_ents(out, id, count, &ents);
    sb_buf_fini(&ents);
}
