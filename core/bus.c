/*
 * bus.c: node identity, the local directory of actor mailboxes, the table of remote nodes,
 * the tcp ingress (authenticate, then forward to a local mailbox) and HELLO discovery.
 *
 * Invariants:
 *  - tcp is never open without a secret (sb_bus_alloc refuses the configuration);
 *  - a batch from tcp reaches an actor only after its HMAC and timestamp check out, and only
 *    if every frame in it names the same local actor;
 *  - node entries are never removed while the bus lives (a silent node is marked down), so a
 *    remote push socket handed to an actor stays valid until sb_bus_free;
 *  - all tables are guarded by bus->mu; NNG callbacks run on NNG's threads.
 */
#include "bus.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/id.h"

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUS_MAX_NODES 64

typedef struct {
    uint64_t id;
    char name[128];
    char url[256];
    uint64_t actors;
    uint64_t last_seen_ms;
    nng_socket sock;
    int dialed;
} bus_node_t;

typedef struct {
    nng_socket sock;
    int open;
    char url[256];
} bus_join_t;

struct sb_bus {
    uint64_t id;
    char name[128];
    char url[256]; /* advertised; empty when not listening */
    uint64_t started_ms;
    uint8_t *secret;
    size_t secret_len;
    uint32_t hello_ms, node_ttl_ms, max_skew_ms;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    char local_url[SB_ACTOR_KINDS][96]; /* empty: kind not running here */
    nng_socket fwd[SB_ACTOR_KINDS];     /* ingress -> local mailbox */
    int fwd_open[SB_ACTOR_KINDS];
    bus_node_t nodes[BUS_MAX_NODES];
    size_t nnodes;
    bus_join_t *joins;
    size_t njoins;

    int listening;
    nng_socket ingress;
    nng_aio *rx_aio;
    nng_aio *fwd_aio; /* forwards one batch at a time; the next receive waits for it */
    nng_aio *hello_aio;
    int started;
    atomic_int stopping;

    _Atomic uint64_t by_type[SB_BUS_TYPE_SLOTS];
    _Atomic uint64_t auth_refused;
};

static void bus_on_rx(void *arg);
static void bus_on_fwd(void *arg);
static void bus_on_hello_timer(void *arg);

static int
bus_nng_err(int e)
{
    switch (e) {
    case 0: return 0;
    case NNG_EAGAIN: return SB_EAGAIN;
    case NNG_ECLOSED: return SB_ECLOSED;
    case NNG_ETIMEDOUT: return SB_ETIMEDOUT;
    case NNG_ENOMEM: return SB_ENOMEM;
    case NNG_EMSGSIZE: return SB_ETOOBIG;
    case NNG_EADDRINVAL: case NNG_EINVAL: return SB_EINVAL;
    case NNG_EADDRINUSE: return SB_EEXIST;
    default: return SB_EIO;
    }
}

uint64_t
sb_bus_node_id(const sb_bus_t *bus)
{
    return bus->id;
}

const char *
sb_bus_node_name(const sb_bus_t *bus)
{
    return bus->name;
}

const char *
sb_bus_url(const sb_bus_t *bus)
{
    return bus->url[0] ? bus->url : NULL;
}

const uint8_t *
sb__bus_secret(const sb_bus_t *bus, size_t *len)
{
    *len = bus->secret_len;
    return bus->secret;
}

void
sb__bus_count(sb_bus_t *bus, uint16_t type)
{
    atomic_fetch_add_explicit(&bus->by_type[type % SB_BUS_TYPE_SLOTS], 1, memory_order_relaxed);
}

uint64_t
sb_bus_count(const sb_bus_t *bus, uint16_t type)
{
    return atomic_load_explicit(&((sb_bus_t *)bus)->by_type[type % SB_BUS_TYPE_SLOTS],
                                memory_order_relaxed);
}

uint64_t
sb_bus_auth_refused(const sb_bus_t *bus)
{
    return atomic_load(&((sb_bus_t *)bus)->auth_refused);
}

/* bus_listen opens the tcp ingress and learns the bound port for the advertised URL. */
static int
bus_listen(sb_bus_t *bus, const char *url, const char *advertise)
{
    nng_listener l;
    int e, port = 0;

    if ((e = nng_pull0_open(&bus->ingress)) != 0)
        return bus_nng_err(e);
    /* Refuse oversized batches before NNG allocates them. */
    nng_socket_set_size(bus->ingress, NNG_OPT_RECVMAXSZ, SB_BATCH_MAX);
    nng_socket_set_int(bus->ingress, NNG_OPT_RECVBUF, 1024);
    if ((e = nng_listen(bus->ingress, url, &l, 0)) != 0) {
        sb_log_error("SB-BUS-LISTEN-FAIL", "cannot listen on %s: %s", url, nng_strerror(e));
        nng_close(bus->ingress);
        return bus_nng_err(e);
    }
    bus->listening = 1;
    nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port);
    if (advertise && *advertise) {
        snprintf(bus->url, sizeof bus->url, "%s", advertise);
    } else {
        /* tcp://host:port -> replace the port with the bound one. */
        const char *host = url + 6;
        const char *colon = strrchr(host, ':');
        int hl = colon ? (int)(colon - host) : (int)strlen(host);
        if (hl == 0 || (hl == 7 && strncmp(host, "0.0.0.0", 7) == 0) ||
            (hl == 1 && host[0] == '*')) {
            sb_log_error("SB-BUS-ADVERTISE", "bus listens on a wildcard address (%s): set "
                         "bus.advertise to the URL other nodes reach this one at", url);
            return SB_ECONFIG;
        }
        snprintf(bus->url, sizeof bus->url, "tcp://%.*s:%d", hl, host, port);
    }
    if ((e = nng_aio_alloc(&bus->rx_aio, bus_on_rx, bus)) != 0 ||
        (e = nng_aio_alloc(&bus->fwd_aio, bus_on_fwd, bus)) != 0)
        return bus_nng_err(e);
    /* A local actor that stays full this long is stuck: its batch is dropped, logged. */
    nng_aio_set_timeout(bus->fwd_aio, 5000);
    nng_recv_aio(bus->ingress, bus->rx_aio);
    sb_log_info("SB-BUS-LISTEN", "bus listening on %s (advertised %s)", url, bus->url);
    return 0;
}

int
sb_bus_alloc(const sb_bus_opts_t *opts, sb_bus_t **out)
{
    sb_bus_t *bus = sb_xcalloc(1, sizeof *bus);
    int r;

    pthread_mutex_init(&bus->mu, NULL);
    pthread_cond_init(&bus->cond, NULL);
    if (sb_random_bytes(&bus->id, sizeof bus->id) != 0 || bus->id == 0)
        bus->id = ((uint64_t)getpid() << 32) ^ sb_now_mono_us();
    if (opts->node_name && *opts->node_name) {
        snprintf(bus->name, sizeof bus->name, "%s", opts->node_name);
    } else {
        char host[64] = "node";
        gethostname(host, sizeof host - 1);
        snprintf(bus->name, sizeof bus->name, "%s", host);
    }
    bus->started_ms = sb_now_real_ms();
    bus->hello_ms = opts->hello_ms ? opts->hello_ms : 1000;
    bus->node_ttl_ms = opts->node_ttl_ms ? opts->node_ttl_ms : 5000;
    bus->max_skew_ms = opts->max_skew_ms ? opts->max_skew_ms : 30000;

    int tcp = (opts->listen && *opts->listen) || opts->njoin > 0;
    if (tcp && (!opts->secret || opts->secret_len < 16)) {
        sb_log_error("SB-BUS-NO-SECRET", "a tcp bus needs bus.secret (at least 16 bytes): "
                     "an open bus port must never accept strangers");
        r = SB_ECONFIG;
        goto fail;
    }
    if (opts->secret && opts->secret_len) {
        bus->secret = sb_xmalloc(opts->secret_len);
        memcpy(bus->secret, opts->secret, opts->secret_len);
        bus->secret_len = opts->secret_len;
    }
    for (size_t i = 0; i < opts->njoin; i++)
        if (strncmp(opts->join[i], "tcp://", 6) != 0) {
            sb_log_error("SB-BUS-BAD-URL", "bus.join: '%s' is not a tcp:// URL", opts->join[i]);
            r = SB_ECONFIG;
            goto fail;
        }
    if (opts->njoin && !(opts->listen && *opts->listen)) {
        sb_log_error("SB-BUS-JOIN-NEEDS-LISTEN",
                     "bus.join needs bus.listen: the nodes you join must be able to reach you");
        r = SB_ECONFIG;
        goto fail;
    }
    if (opts->listen && *opts->listen) {
        if (strncmp(opts->listen, "tcp://", 6) != 0) {
            sb_log_error("SB-BUS-BAD-URL", "bus.listen: '%s' is not a tcp:// URL", opts->listen);
            r = SB_ECONFIG;
            goto fail;
        }
        if ((r = bus_listen(bus, opts->listen, opts->advertise)) != 0)
            goto fail;
    }
    bus->njoins = opts->njoin;
    bus->joins = sb_xcalloc(opts->njoin ? opts->njoin : 1, sizeof *bus->joins);
    for (size_t i = 0; i < opts->njoin; i++)
        snprintf(bus->joins[i].url, sizeof bus->joins[i].url, "%s", opts->join[i]);
    *out = bus;
    return 0;
fail:
    sb_bus_free(bus);
    return r;
}

/* bus_hello_body encodes our HELLO, with the URLs of the live nodes we know as peers. */
static int
bus_hello_body(sb_bus_t *bus, int want_reply, sb_buf_t *out)
{
    sb_buf_t peers;
    sb_hello_t h = {0};
    msgpack_packer pk;
    uint32_t n = 0;
    uint64_t mask = 0, now = sb_now_real_ms();

    sb_buf_init(&peers, 60000);
    sb_codec_packer(&pk, &peers);
    pthread_mutex_lock(&bus->mu);
    for (int k = 1; k < SB_ACTOR_KINDS; k++)
        if (bus->local_url[k][0])
            mask |= 1ull << k;
    for (size_t i = 0; i < bus->nnodes; i++)
        if (bus->nodes[i].url[0] && now - bus->nodes[i].last_seen_ms < bus->node_ttl_ms)
            n++;
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < bus->nnodes; i++) {
        bus_node_t *nd = &bus->nodes[i];
        if (!nd->url[0] || now - nd->last_seen_ms >= bus->node_ttl_ms)
            continue;
        size_t l = strlen(nd->url);
        msgpack_pack_str(&pk, l);
        msgpack_pack_str_body(&pk, nd->url, l);
    }
    pthread_mutex_unlock(&bus->mu);
    h.node = sb_str(bus->name);
    h.url = sb_str(bus->url);
    h.actors = mask;
    h.want_reply = want_reply;
    h.peers = (sb_str_t){(const char *)peers.data, (uint32_t)peers.len};
    h.started_ms = bus->started_ms;
    int r = sb_hello_encode(&h, out);
    sb_buf_fini(&peers);
    return r;
}

/* bus_send_hello sends a sealed HELLO batch on sock (never blocks). */
static void
bus_send_hello(sb_bus_t *bus, nng_socket sock, int want_reply)
{
    sb_buf_t body, batch;
    nng_msg *nm;

    sb_buf_init(&body, 0);
    sb_buf_init(&batch, 0);
    if (bus_hello_body(bus, want_reply, &body) == 0) {
        sb_msg_t m = {.type = SB_MSG_HELLO, .dst_actor = SB_ACTOR_NONE, .body = body.data,
                      .body_len = (uint32_t)body.len};
        sb_batch_begin(&batch, bus->id);
        sb_batch_add(&batch, &m);
        sb_batch_seal(&batch, bus->secret, bus->secret_len);
        if (nng_msg_alloc(&nm, 0) == 0) {
            nng_msg_append(nm, batch.data, batch.len);
            if (nng_sendmsg(sock, nm, NNG_FLAG_NONBLOCK) != 0)
                nng_msg_free(nm);
        }
    }
    sb_buf_fini(&body);
    sb_buf_fini(&batch);
}

static int
bus_open_push(nng_socket *s, const char *url)
{
    int e;
    if ((e = nng_push0_open(s)) != 0)
        return bus_nng_err(e);
    nng_socket_set_int(*s, NNG_OPT_SENDBUF, 1024);
    nng_socket_set_ms(*s, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(*s, NNG_OPT_RECONNMAXT, 1000);
    if ((e = nng_dial(*s, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        nng_close(*s);
        return bus_nng_err(e);
    }
    return 0;
}

/* bus_peer_url: a URL we heard of; dial it and say hello if no known node has it. */
static void
bus_learn_url(sb_bus_t *bus, const char *url)
{
    nng_socket s;
    int known = strcmp(url, bus->url) == 0;
    for (size_t i = 0; i < bus->nnodes && !known; i++)
        known = strcmp(bus->nodes[i].url, url) == 0;
    for (size_t i = 0; i < bus->njoins && !known; i++)
        known = strcmp(bus->joins[i].url, url) == 0;
    if (known || bus->nnodes >= BUS_MAX_NODES)
        return;
    /* An unknown peer: treat it as a join target so the periodic HELLO reaches it. */
    bus_join_t *j = sb_xrealloc(bus->joins, (bus->njoins + 1) * sizeof *j);
    bus->joins = j;
    j = &bus->joins[bus->njoins];
    memset(j, 0, sizeof *j);
    snprintf(j->url, sizeof j->url, "%s", url);
    if (bus_open_push(&s, url) == 0) {
        j->sock = s;
        j->open = 1;
    }
    bus->njoins++;
}

/* bus_on_hello records (or refreshes) the sender and answers if it asked. */
static void
bus_on_hello(sb_bus_t *bus, const sb_msg_t *m)
{
    sb_hello_t h;
    bus_node_t *nd = NULL;
    int fresh = 0;

    if (sb_hello_decode(m, &h) != 0 || m->src_node == bus->id || m->src_node == 0) {
        sb_log_warn("SB-BUS-BAD-HELLO", "malformed HELLO from node %016llx dropped",
                    (unsigned long long)m->src_node);
        return;
    }
    if (h.url.len < 7 || h.url.len >= sizeof nd->url || strncmp(h.url.ptr, "tcp://", 6) != 0) {
        sb_log_warn("SB-BUS-BAD-HELLO", "HELLO without a usable tcp URL dropped");
        return;
    }
    pthread_mutex_lock(&bus->mu);
    for (size_t i = 0; i < bus->nnodes; i++)
        if (bus->nodes[i].id == m->src_node)
            nd = &bus->nodes[i];
    if (!nd) {
        if (bus->nnodes >= BUS_MAX_NODES) {
            pthread_mutex_unlock(&bus->mu);
            sb_log_warn("SB-BUS-TOO-MANY-NODES", "node table full (%d)", BUS_MAX_NODES);
            return;
        }
        nd = &bus->nodes[bus->nnodes];
        memset(nd, 0, sizeof *nd);
        nd->id = m->src_node;
        sb_str_copy(nd->url, sizeof nd->url, h.url);
        if (bus_open_push(&nd->sock, nd->url) != 0) {
            pthread_mutex_unlock(&bus->mu);
            sb_log_warn("SB-BUS-DIAL-FAIL", "cannot dial node at %s", nd->url);
            return;
        }
        nd->dialed = 1;
        bus->nnodes++;
        fresh = 1;
    }
    if (sb_str_copy(nd->name, sizeof nd->name, h.node) != 0)
        snprintf(nd->name, sizeof nd->name, "%016llx", (unsigned long long)nd->id);
    nd->actors = h.actors & ((1ull << SB_ACTOR_KINDS) - 2);
    nd->last_seen_ms = sb_now_real_ms();
    /* Peers we have not met yet: say hello to them too (a simple gossip). */
    if (h.peers.len) {
        sb_mp_reader_t r;
        uint32_t n;
        sb_mp_reader_init(&r, h.peers.ptr, h.peers.len);
        if (sb_mp_read_array(&r, &n) == 0)
            for (uint32_t i = 0; i < n && i < BUS_MAX_NODES; i++) {
                sb_str_t u;
                char url[256];
                if (sb_mp_read_str(&r, &u) || sb_str_copy(url, sizeof url, u) ||
                    strncmp(url, "tcp://", 6) != 0)
                    break;
                bus_learn_url(bus, url);
            }
    }
    nng_socket sock = nd->sock;
    pthread_cond_broadcast(&bus->cond);
    pthread_mutex_unlock(&bus->mu);
    if (fresh)
        sb_log_info("SB-BUS-NODE-UP", "node %s (%016llx) at %s joined", nd->name,
                    (unsigned long long)m->src_node, nd->url);
    if (h.want_reply || fresh)
        bus_send_hello(bus, sock, 0);
}

/* bus_refuse logs and closes the pipe a bad batch came on. */
static void
bus_refuse(sb_bus_t *bus, nng_msg *nm, const char *why)
{
    nng_pipe p = nng_msg_get_pipe(nm);
    nng_sockaddr sa;
    char addr[64] = "?";

    atomic_fetch_add(&bus->auth_refused, 1);
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0 && sa.s_family == NNG_AF_INET) {
        uint8_t *ip = (uint8_t *)&sa.s_in.sa_addr;
        snprintf(addr, sizeof addr, "%u.%u.%u.%u:%u", ip[0], ip[1], ip[2], ip[3],
                 (unsigned)((sa.s_in.sa_port >> 8) | ((sa.s_in.sa_port & 0xff) << 8)));
    }
    sb_log_warn("SB-BUS-REFUSED", "bus peer %s refused: %s; connection closed", addr, why);
    nng_pipe_close(p);
}

/* bus_forward hands an authenticated batch to the local mailbox it names.  Returns 1 when
 * the send is under way (bus_on_fwd re-arms the receive), 0 when the batch was dropped.
 *
 * The send is asynchronous and the ingress receives nothing else until it completes: a full
 * actor stops the ingress reading, TCP flow control stops the remote sender's pipe, and the
 * sender's actor sees SB_EAGAIN -- backpressure end to end instead of drops. */
static int
bus_forward(sb_bus_t *bus, int kind, nng_msg *nm)
{
    int e;
    pthread_mutex_lock(&bus->mu);
    if (!bus->local_url[kind][0]) {
        pthread_mutex_unlock(&bus->mu);
        sb_log_warn("SB-BUS-NO-ACTOR", "batch for %s, which does not run here, dropped",
                    sb_actor_kind_name(kind));
        nng_msg_free(nm);
        return 0;
    }
    if (!bus->fwd_open[kind]) {
        if ((e = nng_push0_open(&bus->fwd[kind])) == 0) {
            nng_socket_set_int(bus->fwd[kind], NNG_OPT_SENDBUF, 32);
            if ((e = nng_dial(bus->fwd[kind], bus->local_url[kind], NULL, 0)) != 0)
                nng_close(bus->fwd[kind]);
        }
        if (e) {
            pthread_mutex_unlock(&bus->mu);
            nng_msg_free(nm);
            return 0;
        }
        bus->fwd_open[kind] = 1;
    }
    nng_socket s = bus->fwd[kind];
    pthread_mutex_unlock(&bus->mu);
    nng_aio_set_msg(bus->fwd_aio, nm);
    nng_send_aio(s, bus->fwd_aio);
    return 1;
}

static void
bus_on_fwd(void *arg)
{
    sb_bus_t *bus = arg;
    int e = nng_aio_result(bus->fwd_aio);
    if (e != 0) {
        nng_msg_free(nng_aio_get_msg(bus->fwd_aio));
        if (e == NNG_ECLOSED || e == NNG_ECANCELED || atomic_load(&bus->stopping))
            return;
        sb_log_set_actor("bus");
        sb_log_warn("SB-BUS-FWD-STUCK", "a local actor took no batch for 5 s; batch dropped");
    }
    if (!atomic_load(&bus->stopping))
        nng_recv_aio(bus->ingress, bus->rx_aio);
}

static void
bus_on_rx(void *arg)
{
    sb_bus_t *bus = arg;
    nng_msg *nm;
    sb_batch_iter_t it;
    sb_msg_t m;
    int e = nng_aio_result(bus->rx_aio);

    if (e == NNG_ECLOSED || e == NNG_ECANCELED || atomic_load(&bus->stopping))
        return;
    sb_log_set_actor("bus"); /* NNG's thread: name it in our log lines */
    if (e != 0)
        goto rearm;
    nm = nng_aio_get_msg(bus->rx_aio);
    e = sb_batch_open(&it, nng_msg_body(nm), nng_msg_len(nm), bus->secret, bus->secret_len,
                      bus->max_skew_ms);
    if (e) {
        bus_refuse(bus, nm, e == SB_EAUTH ? "bad or missing HMAC, or stale timestamp"
                                          : "malformed batch");
        nng_msg_free(nm);
        goto rearm;
    }
    int kind = -1, n;
    sb_batch_iter_t walk = it;
    while ((n = sb_batch_next(&walk, &m)) == 1) {
        if (kind == -1)
            kind = m.dst_actor;
        if (m.dst_actor != kind || kind >= SB_ACTOR_KINDS) {
            n = SB_EBADMSG;
            break;
        }
        if (m.dst_node != 0 && m.dst_node != bus->id) {
            n = SB_EBADMSG;
            break;
        }
    }
    if (n != 0 || kind < 0) {
        bus_refuse(bus, nm, "malformed frames");
        nng_msg_free(nm);
        goto rearm;
    }
    if (kind == SB_ACTOR_NONE) {
        while (sb_batch_next(&it, &m) == 1)
            if (m.type == SB_MSG_HELLO)
                bus_on_hello(bus, &m);
        nng_msg_free(nm);
    } else if (bus_forward(bus, kind, nm)) {
        return; /* bus_on_fwd re-arms */
    }
rearm:
    nng_recv_aio(bus->ingress, bus->rx_aio);
}

/* bus_on_hello_timer: HELLO to join targets and known nodes, then re-arm. */
static void
bus_on_hello_timer(void *arg)
{
    sb_bus_t *bus = arg;
    nng_socket socks[BUS_MAX_NODES * 2];
    size_t n = 0;

    if (nng_aio_result(bus->hello_aio) != 0 || atomic_load(&bus->stopping))
        return;
    pthread_mutex_lock(&bus->mu);
    for (size_t i = 0; i < bus->njoins && n < BUS_MAX_NODES; i++) {
        bus_join_t *j = &bus->joins[i];
        int met = 0;
        for (size_t k = 0; k < bus->nnodes; k++)
            met |= strcmp(bus->nodes[k].url, j->url) == 0;
        if (met)
            continue; /* its node entry's socket carries the heartbeat */
        if (!j->open && bus_open_push(&j->sock, j->url) == 0)
            j->open = 1;
        if (j->open)
            socks[n++] = j->sock;
    }
    for (size_t i = 0; i < bus->nnodes; i++)
        if (bus->nodes[i].dialed)
            socks[n++] = bus->nodes[i].sock;
    pthread_mutex_unlock(&bus->mu);
    for (size_t i = 0; i < n; i++)
        bus_send_hello(bus, socks[i], 1);
    nng_sleep_aio(bus->hello_ms, bus->hello_aio);
}

int
sb_bus_start(sb_bus_t *bus)
{
    int e;
    if (bus->started || (!bus->listening && bus->njoins == 0))
        return 0;
    if ((e = nng_aio_alloc(&bus->hello_aio, bus_on_hello_timer, bus)) != 0)
        return bus_nng_err(e);
    bus->started = 1;
    nng_sleep_aio(0, bus->hello_aio);
    return 0;
}

void
sb_bus_free(sb_bus_t *bus)
{
    if (!bus)
        return;
    atomic_store(&bus->stopping, 1);
    if (bus->hello_aio) {
        nng_aio_stop(bus->hello_aio);
        nng_aio_free(bus->hello_aio);
    }
    if (bus->rx_aio) {
        nng_aio_stop(bus->rx_aio);
        nng_aio_free(bus->rx_aio);
    }
    if (bus->fwd_aio) {
        nng_aio_stop(bus->fwd_aio);
        nng_aio_free(bus->fwd_aio);
    }
    if (bus->listening)
        nng_close(bus->ingress);
    for (int k = 0; k < SB_ACTOR_KINDS; k++)
        if (bus->fwd_open[k])
            nng_close(bus->fwd[k]);
    for (size_t i = 0; i < bus->nnodes; i++)
        if (bus->nodes[i].dialed)
            nng_close(bus->nodes[i].sock);
    for (size_t i = 0; i < bus->njoins; i++)
        if (bus->joins[i].open)
            nng_close(bus->joins[i].sock);
    free(bus->joins);
    if (bus->secret) {
        memset(bus->secret, 0, bus->secret_len);
        free(bus->secret);
    }
    pthread_mutex_destroy(&bus->mu);
    pthread_cond_destroy(&bus->cond);
    free(bus);
}

int
sb__bus_register(sb_bus_t *bus, int kind, char *url_out, size_t cap)
{
    int r = 0;
    pthread_mutex_lock(&bus->mu);
    if (bus->local_url[kind][0]) {
        r = SB_EEXIST;
    } else {
        snprintf(bus->local_url[kind], sizeof bus->local_url[kind], "inproc://sb-%016llx-%s",
                 (unsigned long long)bus->id, sb_actor_kind_name(kind));
        snprintf(url_out, cap, "%s", bus->local_url[kind]);
    }
    pthread_cond_broadcast(&bus->cond);
    pthread_mutex_unlock(&bus->mu);
    return r;
}

void
sb__bus_unregister(sb_bus_t *bus, int kind)
{
    pthread_mutex_lock(&bus->mu);
    bus->local_url[kind][0] = 0;
    if (bus->fwd_open[kind]) {
        nng_close(bus->fwd[kind]);
        bus->fwd_open[kind] = 0;
    }
    pthread_mutex_unlock(&bus->mu);
}

/* bus_alive: a node we heard from within the TTL. */
static int
bus_alive(const sb_bus_t *bus, const bus_node_t *nd, uint64_t now)
{
    return now - nd->last_seen_ms < bus->node_ttl_ms;
}

int
sb__bus_route(sb_bus_t *bus, sb_addr_t dst, sb__route_t *out)
{
    int r = SB_ENOROUTE;
    uint64_t now = sb_now_real_ms();

    if (dst.kind == 0 || dst.kind >= SB_ACTOR_KINDS)
        return SB_EINVAL;
    pthread_mutex_lock(&bus->mu);
    if ((dst.node == 0 || dst.node == bus->id) && bus->local_url[dst.kind][0]) {
        out->local = 1;
        out->node = bus->id;
        snprintf(out->url, sizeof out->url, "%s", bus->local_url[dst.kind]);
        r = 0;
    } else if (dst.node != bus->id) {
        for (size_t i = 0; i < bus->nnodes; i++) {
            bus_node_t *nd = &bus->nodes[i];
            if (dst.node ? nd->id != dst.node
                         : !(nd->actors & (1ull << dst.kind)) || !bus_alive(bus, nd, now))
                continue;
            out->local = 0;
            out->node = nd->id;
            out->remote = &nd->sock;
            out->url[0] = 0;
            r = 0;
            break;
        }
    }
    pthread_mutex_unlock(&bus->mu);
    return r;
}

size_t
sb_bus_nodes(sb_bus_t *bus, sb_node_info_t *out, size_t max)
{
    size_t n = 0;
    uint64_t now = sb_now_real_ms();
    if (max == 0)
        return 0;
    pthread_mutex_lock(&bus->mu);
    memset(&out[0], 0, sizeof out[0]);
    out[0].id = bus->id;
    snprintf(out[0].name, sizeof out[0].name, "%s", bus->name);
    snprintf(out[0].url, sizeof out[0].url, "%s", bus->url);
    for (int k = 1; k < SB_ACTOR_KINDS; k++)
        if (bus->local_url[k][0])
            out[0].actors |= 1ull << k;
    out[0].alive = out[0].local = 1;
    n = 1;
    for (size_t i = 0; i < bus->nnodes && n < max; i++, n++) {
        bus_node_t *nd = &bus->nodes[i];
        out[n].id = nd->id;
        memcpy(out[n].name, nd->name, sizeof out[n].name);
        memcpy(out[n].url, nd->url, sizeof out[n].url);
        out[n].actors = nd->actors;
        out[n].alive = bus_alive(bus, nd, now);
        out[n].local = 0;
    }
    pthread_mutex_unlock(&bus->mu);
    return n;
}

int
sb_bus_wait_kind(sb_bus_t *bus, int kind, uint32_t timeout_ms)
{
    uint64_t until = sb_now_mono_us() + (uint64_t)timeout_ms * 1000;
    for (;;) {
        sb__route_t rt;
        if (sb__bus_route(bus, sb_addr((uint8_t)kind), &rt) == 0)
            return 0;
        uint64_t now = sb_now_mono_us();
        if (now >= until)
            return SB_ETIMEDOUT;
        /* Woken by HELLO or registration; the 20 ms cap also covers node TTL changes. */
        uint64_t wait = until - now < 20000 ? until - now : 20000;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait * 1000);
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_mutex_lock(&bus->mu);
        pthread_cond_timedwait(&bus->cond, &bus->mu, &ts);
        pthread_mutex_unlock(&bus->mu);
    }
}
