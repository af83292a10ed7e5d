/* test.c: the shared C test harness (see test.h). */
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int sb_test_failures;

static long long
test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
sb_test_ok(const char *name)
{
    printf("ok %s\n", name);
    fflush(stdout);
}

static int test_skipped;

void
sb_test_skip(const char *name, const char *why)
{
    printf("skip %s: %s\n", name, why);
    fflush(stdout);
    test_skipped++;
}

int
sb_test_done(void)
{
    if (sb_test_failures) {
        printf("FAILED\n");
        return 1;
    }
    /* A test that skipped part of its cases is reported as skipped, never as passed. */
    printf("%s\n", test_skipped ? "SKIPPED (in part)" : "PASSED");
    return test_skipped ? SB_TEST_SKIP_CODE : 0;
}

int
sb_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

pid_t
sb_test_start_soulbox(const char *const *args, const char *log_path, int timeout_ms, int *port)
{
    int p[2];
    const char *argv[64];
    char fdarg[32];
    int n = 0;

    CHECK(pipe2(p, O_CLOEXEC) == 0);
    argv[n++] = SB_BINARY_DIR "/bin/soulbox";
    for (; args && *args && n < 60; args++)
        argv[n++] = *args;
    snprintf(fdarg, sizeof fdarg, "--ready-fd=%d", 100);
    argv[n++] = fdarg;
    argv[n] = NULL;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(log, 1);
        dup2(log, 2);
        dup2(p[1], 100);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    char buf[256];
    size_t got = 0;
    long long end = test_now_ms() + timeout_ms;
    for (;;) {
        long long left = end - test_now_ms();
        struct pollfd pf = {p[0], POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        ssize_t r = read(p[0], buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = 0;
        char *nl = strchr(buf, '\n');
        if (nl) {
            char *pp = strstr(buf, "port=");
            if (port)
                *port = pp ? atoi(pp + 5) : 0;
            close(p[0]);
            return pid;
        }
    }
    close(p[0]);
    fprintf(stderr, "soulbox did not become ready; see %s\n", log_path);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

int
sb_test_http(int port, const char *method, const char *path, const char *headers,
             const char *body, char **resp_body)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[65536];
    size_t cap = 1 << 20, len = 0;
    char *resp;

    if (resp_body)
        *resp_body = NULL;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, headers ? headers : "", body ? strlen(body) : 0,
                     body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    resp = malloc(cap + 1);
    long long end = test_now_ms() + 30000;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        long long left = end - test_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        ssize_t r = read(fd, resp + len, cap - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap)
            break;
    }
    close(fd);
    resp[len] = 0;
    int status = -1;
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
        status = -1;
    char *b = strstr(resp, "\r\n\r\n");
    if (resp_body)
        *resp_body = strdup(b ? b + 4 : "");
    free(resp);
    return status;
}

int
sb_test_wait_exit(pid_t pid, int timeout_ms)
{
    /* A pidfd turns "child exited" into a pollable event. */
    int st;
    int pfd = (int)syscall(434 /* pidfd_open */, pid, 0);
    if (pfd >= 0) {
        struct pollfd pf = {pfd, POLLIN, 0};
        int r = poll(&pf, 1, timeout_ms);
        close(pfd);
        if (r <= 0)
            return -1;
    }
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return st;
}

int
sb_test_wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
    long long end = test_now_ms() + timeout_ms;
    char *buf = malloc(1 << 22);
    int found = 0;
    for (;;) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t n = fread(buf, 1, (1 << 22) - 1, f);
            fclose(f);
            buf[n] = 0;
            if (strstr(buf, needle)) {
                found = 1;
                break;
            }
        }
        if (test_now_ms() >= end)
            break;
        /* Log files give no event to wait on short of inotify; re-read on a 10 ms tick. */
        poll(NULL, 0, 10);
    }
    free(buf);
    return found;
}

void
sb_test_config(sb_config_t *cfg, const char *const *flags)
{
    char *argv[64], *rest[64], err[512];
    char *env[] = {NULL};
    int n = 0, nrest = 0;
    for (; flags && flags[n] && n < 63; n++)
        argv[n] = (char *)flags[n];
    argv[n] = NULL;
    if (sb_config_load(cfg, n, argv, env, &nrest, rest, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL: config: %s\n", err);
        exit(1);
    }
}
