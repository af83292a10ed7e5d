/*
 * http_internal.h: what the files of the HTTP server (http_server.c, http_router.c) share, plus the
 * hooks tests and the fuzzer use to drive a connection from a buffer without a socket.
 * Nothing here is for the rest of the gateway: use http.h.
 */
#ifndef SB_HTTP_INTERNAL_H
#define SB_HTTP_INTERNAL_H

#include "http.h"

#include <stddef.h>

#define SB__HTTP_MAX_PARAMS 8

/* A registered route.  The pattern is split once, at registration, into segments. */
typedef struct sb__http_route {
    struct sb__http_route *next;
    char method[24];
    char *pattern;   /* as registered; what sb_http_route_pattern returns */
    char *segbuf;    /* copy of the pattern cut into NUL-terminated segments */
    const char **segs;
    int nsegs;
    int rest;        /* last segment was "*": matches any remainder, even empty */
    sb_http_handler_t fn;
    void *ud;
    size_t max_body; /* 0: the server's default */
} sb__http_route_t;

typedef struct {
    sb_str_t name;  /* into the route's segbuf */
    sb_str_t value; /* into the request's decoded path */
} sb__http_param_t;

/* sb__http_route_add appends a route (registration order is match order).  SB_EINVAL for a
 * malformed method or pattern. */
int sb__http_route_add(sb__http_route_t **head, const char *method, const char *pattern,
                       sb_http_handler_t fn, void *ud, size_t max_body);
void sb__http_routes_free(sb__http_route_t *head);
/* sb__http_route_match finds the first route whose pattern and method fit.  0 with *out and
 * params filled; SB_ENOTFOUND if no pattern matches the path; SB_EUNSUPPORTED if some pattern
 * matches but no method does, with the allowed methods ("GET, HEAD, POST") in allow. HEAD
 * falls back to GET routes. */
int sb__http_route_match(const sb__http_route_t *head, const char *method, const char *path,
                         size_t len, const sb__http_route_t **out, sb__http_param_t *params,
                         int *nparams, char *allow, size_t allow_cap);
/* sb__http_pct_decode decodes n bytes of in into out (room for n bytes); plus: '+' is a space
 * (query strings).  Returns the decoded length, or -1 for a bad escape or a NUL byte. */
int sb__http_pct_decode(const char *in, size_t n, char *out, int plus);
/* sb__http_split_target splits a request target (origin or absolute form, or "*") into the
 * raw path and the raw query (without '?').  -1 if it is neither. */
int sb__http_split_target(const char *url, size_t len, sb_str_t *path, sb_str_t *query);
/* sb__http_query_get: sb_http_query's work on a raw query string. */
int sb__http_query_get(sb_str_t query, const char *name, char *out, size_t cap);

/* Connections driven from memory: the fuzzer and tests feed bytes and nothing is written
 * anywhere (responses are serialized and dropped).  Same loop thread rules as the server. */
typedef struct sb__http_conn sb__http_conn_t;
sb__http_conn_t *sb__http_conn_virtual(sb_http_server_t *srv);
void sb__http_conn_feed(sb__http_conn_t *c, const void *data, size_t len);
/* sb__http_conn_eof tells the connection its peer finished sending. */
void sb__http_conn_eof(sb__http_conn_t *c);
/* sb__http_conn_close closes it (asynchronously: run the loop to finish). */
void sb__http_conn_close(sb__http_conn_t *c);
/* Bytes of response queued on req's connection and not yet written (0 if detached). */
size_t sb__http_out_pending(const sb_http_req_t *req);
/* The highest out_pending any connection of srv has reached. */
size_t sb__http_out_high_water(const sb_http_server_t *srv);
/* Number of open connections (virtual ones included). */
size_t sb__http_conn_count(const sb_http_server_t *srv);

#endif
