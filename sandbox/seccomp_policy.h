/*
 * seccomp_policy.h: the seccomp filter every sandboxed process runs under, shared by
 * soulbox-init (which installs it on itself just before serving, so every process it spawns
 * inherits it) and the unit tests (which inspect it).  One definition, so the policy cannot
 * drift between what is documented in docs/security.md and what is installed.
 *
 * Policy: default-deny allowlist in the spirit of Docker's default profile.  Anything not
 * listed fails with EPERM; clone3 fails with ENOSYS so libc falls back to clone(2), whose
 * flags we can inspect; syscalls of a foreign ABI (i386 via int 0x80, x32) kill the process.
 */
#ifndef SB_SECCOMP_POLICY_H
#define SB_SECCOMP_POLICY_H

/*
 * sb_seccomp_install compiles the filter with libseccomp and loads it into the calling
 * thread (the reference path: soulbox-init loads the precompiled program instead, see
 * sb_seccomp_export_bpf).  The caller must already have no_new_privs set (or CAP_SYS_ADMIN).  Uses
 * libseccomp, which allocates: never call it between clone() and execve() in a
 * multi-threaded process.  Returns 0 or a negated errno.
 */
int sb_seccomp_install(void);

/*
 * sb_seccomp_export_bpf writes the filter as the raw BPF program the kernel loads (an array
 * of struct sock_filter, native byte order) to fd.  The build runs it once
 * (seccomp_policy_gen.c) and compiles the result into soulbox-init, which loads it with
 * seccomp(2) directly: compiling the policy with libseccomp in every sandbox cost ~2 ms of
 * its start-up.  Returns 0 or a negated errno.
 */
int sb_seccomp_export_bpf(int fd);

/*
 * sb_seccomp_export_pfc writes the filter in libseccomp's human-readable PFC form to fd (for
 * debugging and docs).  Returns 0 or a negated errno.
 */
int sb_seccomp_export_pfc(int fd);

#endif
