/*
 * init.h: internals of soulbox-init, the PID 1 of every sandbox.  soulbox-init is a separate,
 * single-threaded executable: the multi-threaded server only clone()s and execve()s it, and
 * it does all setup that needs malloc, libseccomp or many syscalls (setup.c), then serves
 * frames from the executor (serve.c, files.c).  Nothing here is shared with other modules
 * but protocols/frame.h (the frames, from init.def) and seccomp_policy.h.
 */
#ifndef SB_INIT_H
#define SB_INIT_H

#include "protocols/frame.h"

#include <stdint.h>

/* Fixed identities inside every sandbox. */
#define SB_INIT_UID 1000
#define SB_INIT_GID 1000
#define SB_INIT_HOME "/home/user"

typedef struct {
    int fd;               /* control socket to the executor */
    const char *rootdir;  /* host directory used as the mount point of the new root */
    uint64_t disk_mb;     /* size of /home/user and of /tmp (each) */
    uint64_t shm_mb;      /* size of /dev/shm */
    uint64_t inodes;      /* nr_inodes of each writable tmpfs */
    const char *hostname;
} sbi_config_t;

/* setup.c: build the root, drop privileges, install seccomp.  On failure *what names the
 * step and the return is a negated errno. */
int sbi_setup(const sbi_config_t *c, const char **what);

/* serve.c helpers used by files.c */
int sbi_send(sb_buf_t *frame_body_with_header);
/* files.c: one file operation (a frame of that type); appends its REPLY frame to out. */
void sbi_file_op(uint8_t type, const uint8_t *body, size_t len, sb_buf_t *out);
/* ps: appends the REPLY frame listing processes. */
void sbi_ps(uint64_t id, sb_buf_t *out);

#endif
