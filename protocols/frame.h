/*
 * frame.h: the wire between the executor and soulbox-init (over a SOCK_STREAM socketpair).
 *
 * A frame is a little-endian u32 length followed by that many bytes of one msgpack map.  Key
 * "t" is the frame type (SB_IF_*); the other keys are short names listed below, each with a
 * size cap.  Unknown keys are skipped, missing keys take zero/empty defaults, so either side
 * can grow.  A frame longer than SB_FRAME_MAX, or a body that is not a map of known types, is
 * refused: soulbox-init answers SB_IF_ERROR and keeps serving; the executor treats it as a
 * lost sandbox.  Shared by both sides (init links only this, mp.c and buf.c).
 *
 * Decoded strings are views into the frame buffer: copy what you keep.
 */
#ifndef SB_EXECUTOR_FRAME_H
#define SB_EXECUTOR_FRAME_H

#include "base/buf.h"
#include "base/str.h"
#include "mpw.h"

#include <stdbool.h>
#include <stdint.h>

#define SB_FRAME_MAX (9u << 20) /* one frame, header excluded: 8 MiB of file data + slack */
#define SB_FRAME_DATA_MAX (8u << 20)
#define SB_FRAME_PATH_MAX 4096
#define SB_FRAME_ARGS_MAX 1024 /* argv or env entries */

enum {
    /* executor -> init */
    SB_IF_EXEC = 2,         /* id argv env cwd pty rows cols nofile nproc fsize cpu */
    SB_IF_STDIN = 3,        /* id data */
    SB_IF_STDIN_CLOSE = 4,  /* id */
    SB_IF_SIGNAL = 5,       /* id sig (to the process group of process id) */
    SB_IF_RESIZE = 6,       /* id rows cols */
    SB_IF_PS = 7,           /* id -> REPLY ents[{pid ppid state cmd}] */
    SB_IF_FREAD = 8,        /* id path max -> REPLY data size */
    SB_IF_FWRITE = 9,       /* id path data mode append -> REPLY size */
    SB_IF_FLIST = 10,       /* id path depth -> REPLY ents[{path type size mode mtime}] */
    SB_IF_FSTAT = 11,       /* id path -> REPLY type size mode mtime */
    SB_IF_MKDIR = 12,       /* id path mode */
    SB_IF_REMOVE = 13,      /* id path */
    SB_IF_RENAME = 14,      /* id path path2 */
    SB_IF_SIGNAL_ALL = 15,  /* sig: every process but init */
    /* init -> executor */
    SB_IF_HELLO = 19,       /* pid: init is set up and serving */
    SB_IF_STARTED = 20,     /* id pid */
    SB_IF_OUTPUT = 21,      /* id fd data */
    SB_IF_EXIT = 22,        /* id code sig cpu_us maxrss_kb */
    SB_IF_REPLY = 23,       /* id err [payload] */
    SB_IF_ERROR = 24,       /* id err msg: a refused frame */
};

/* A decoded frame: every field any frame type uses (flat, so one decoder serves all). */
typedef struct {
    uint32_t t;
    uint64_t id;
    int64_t fd, sig, code, err, rows, cols, depth, mode, pid, ppid;
    uint64_t max, size, cpu_us, maxrss_kb, mtime, nofile, nproc, fsize, cpu, type;
    bool pty, append;
    sb_str_t data, path, path2, cwd, msg, cmd, state;
    sb_str_t argv, env, ents; /* raw encoded arrays: walk with sb_frame_strv / mp.h */
    uint32_t argc, envc, entc;
} sb_frame_t;

/* sb_frame_decode parses one frame body.  SB_EBADMSG: not a map, a field of the wrong type
 * or over its cap, a string with a NUL byte where a path is expected. */
int sb_frame_decode(const uint8_t *p, size_t n, sb_frame_t *f);

/* sb_frame_decode_entry decodes one element of an "ents" array (a map without "t"). */
int sb_frame_decode_entry(const uint8_t *p, size_t n, sb_frame_t *f);

/* sb_frame_next looks at buffered input: 1 and (*body, *len) when a whole frame is there, 0
 * when more bytes are needed, SB_ETOOBIG when the announced length exceeds SB_FRAME_MAX. */
int sb_frame_next(const sb_buf_t *in, const uint8_t **body, size_t *len);

/* sb_frame_strv copies element i of a raw string array into a NUL-terminated malloc'd
 * string (NULL on a malformed array). */
char *sb_frame_strv(sb_str_t raw, uint32_t i);

/* Frame framing: sb_frame_begin reserves the length word and returns its offset;
 * sb_frame_end fills it in. */
size_t sb_frame_begin(sb_buf_t *b);
void sb_frame_end(sb_buf_t *b, size_t start);

#endif
