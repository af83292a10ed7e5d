/*
 * config.h: SoulBox's configuration, defined once in SB_CONFIG_KEYS.  Each key has a type,
 * a default and (for integers) an allowed range.  Sources, later ones winning:
 * embedded defaults < soulbox.toml (optional; --config FILE, SOULBOX_CONFIG, or ./soulbox.toml)
 * < SOULBOX_* environment variables (key upper-cased, '.' -> '_': SOULBOX_HTTP_PORT)
 * < command-line flags (--http-port 3000, --http.port=3000, plus the aliases below).
 * An invalid value is refused with a message naming the key and the allowed range.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* X(type, field, "key", default, min, max, "help")  -- type: STR, INT or BOOL */
#define SB_CONFIG_KEYS(X)                                                                          \
    X(STR, node_name, "node.name", "", 0, 0, "this node's name on the bus (default: hostname)")   \
    X(STR, roles, "roles", "gateway,scheduler,pool,executor,monitor,auditor,storage", 0, 0,      \
      "the actors this process runs (comma-separated)")                                          \
    X(STR, http_host, "http.host", "127.0.0.1", 0, 0, "address the HTTP/WebSocket API binds")    \
    X(INT, http_port, "http.port", 3000, 0, 65535, "port of the HTTP/WebSocket API (0: any)")    \
    X(INT, http_max_connections, "http.max_connections", 10000, 1, 1000000,                      \
      "open client connections at most")                                                          \
    X(STR, bus_listen, "bus.listen", "", 0, 0, "tcp://host:port other nodes join this one at")   \
    X(STR, bus_advertise, "bus.advertise", "", 0, 0,                                              \
      "URL other nodes reach this one at (default: bus.listen with the bound port)")            \
    X(STR, bus_join, "bus.join", "", 0, 0, "tcp:// URLs of nodes to join (comma-separated)")     \
    X(STR, bus_secret, "bus.secret", "", 0, 0, "shared secret authenticating the tcp bus")       \
    X(STR, bus_secret_file, "bus.secret_file", "", 0, 0, "file holding bus.secret")              \
    X(INT, bus_hello_ms, "bus.hello_ms", 1000, 50, 60000, "node heartbeat interval")             \
    X(INT, bus_node_ttl_ms, "bus.node_ttl_ms", 5000, 200, 600000,                                 \
      "a node silent this long is considered down")                                               \
    X(STR, data_dir, "data_dir", "/var/lib/soulbox", 0, 0, "where persistent state lives")      \
    X(STR, log_level, "log.level", "info", 0, 0, "error, warn, info or debug")                   \
    X(STR, log_format, "log.format", "text", 0, 0, "text or json")                                \
    X(INT, shutdown_grace_ms, "shutdown.grace_ms", 5000, 0, 600000,                               \
      "time in-flight work gets to finish on SIGTERM")                                             \
    X(INT, health_timeout_ms, "health.timeout_ms", 1000, 10, 60000,                               \
      "how long /health waits for each actor's answer")                                           \
    X(STR, storage_backend, "storage.backend", "sqlite", 0, 0, "sqlite (embedded) or redis")    \
    X(STR, storage_redis_host, "storage.redis_host", "127.0.0.1", 0, 0,                          \
      "Redis host (storage.backend = redis)")                                                     \
    X(INT, storage_redis_port, "storage.redis_port", 6379, 1, 65535, "Redis port")               \
    X(INT, storage_redis_db, "storage.redis_db", 0, 0, 1023, "Redis database number (SELECT)")  \
    X(STR, storage_redis_password, "storage.redis_password", "", 0, 0,                            \
      "Redis password (AUTH), if the server needs one")                                           \
    X(STR, storage_redis_prefix, "storage.redis_prefix", "soulbox:", 0, 0,                        \
      "prefix of every Redis key SoulBox writes")                                                 \
    X(INT, storage_max_record_bytes, "storage.max_record_bytes", 65536, 256, 1048576,             \
      "largest record (JSON bytes) storage accepts")                                             \
    X(INT, executor_max_sandboxes, "executor.max_sandboxes", 64, 1, 65536,                        \
      "sandboxes one executor holds at most (one-shot runs included)")                            \
    X(INT, executor_default_timeout_ms, "executor.default_timeout_ms", 30000, 100, 86400000,      \
      "wall-clock limit of a run that names none (and its runtime neither)")                      \
    X(INT, executor_max_timeout_ms, "executor.max_timeout_ms", 600000, 100, 86400000,             \
      "longest wall-clock limit a run may ask for")                                               \
    X(INT, executor_default_memory_mb, "executor.default_memory_mb", 512, 16, 1048576,           \
      "memory limit of a sandbox that names none")                                                \
    X(INT, executor_max_memory_mb, "executor.max_memory_mb", 8192, 16, 1048576,                   \
      "largest memory limit a sandbox or run may ask for")                                        \
    X(INT, executor_output_max, "executor.output_max", 1048576, 1024, 1048576,                   \
      "output bytes kept per stream of a run that names none (and the most one may ask for)")     \
    X(INT, executor_artifacts_max, "executor.artifacts_max", 1048576, 0, 3145728,                \
      "most bytes of artifact data one run result may carry (requests ask up to this)")          \
    X(STR, executor_state_dir, "executor.state_dir", "", 0, 0,                                   \
      "where sandbox state lives (default /run/soulbox)")                                        \
    X(STR, pool_runtimes, "pool.runtimes", "python", 0, 0,                                       \
      "runtimes the pool keeps warm sandboxes of (comma-separated; installed ones only)")        \
    X(INT, pool_min_size, "pool.min_size", 2, 0, 1024, "warm sandboxes kept per runtime at least") \
    X(INT, pool_max_size, "pool.max_size", 8, 0, 4096,                                           \
      "warm sandboxes kept per runtime at most (the pool grows toward it under demand)")         \
    X(INT, pool_max_age_s, "pool.max_age_s", 300, 1, 86400,                                      \
      "an unused warm sandbox older than this is retired and replaced")                          \
    X(BOOL, pool_warm_on_start, "pool.warm_on_start", 1, 0, 0,                                   \
      "create the warm sandboxes at start (false: on the first one-shot request)")               \
    X(INT, scheduler_max_concurrent_per_key, "scheduler.max_concurrent_per_key", 8, 1, 1000000,  \
      "executions one key may have placed or queued at once (beyond: 429)")                      \
    X(INT, scheduler_max_concurrent, "scheduler.max_concurrent", 64, 1, 1000000,                 \
      "executions placed at once across all keys (beyond: queued)")                              \
    X(INT, scheduler_max_sandboxes_per_key, "scheduler.max_sandboxes_per_key", 16, 0, 1000000,   \
      "long-lived sandboxes one key may hold (0: no limit; beyond: 429)")                        \
    X(INT, scheduler_max_queue, "scheduler.max_queue", 256, 0, 1000000,                          \
      "requests waiting for capacity at most (beyond: 503)")                                     \
    X(INT, scheduler_queue_timeout_ms, "scheduler.queue_timeout_ms", 10000, 1, 3600000,          \
      "how long a request waits for capacity before a 503")                                      \
    X(INT, scheduler_lease_timeout_ms, "scheduler.lease_timeout_ms", 600000, 100, 86400000,      \
      "a lease not released this long is reclaimed (logged)")                                    \
    X(INT, scheduler_node_stale_ms, "scheduler.node_stale_ms", 3000, 100, 600000,                \
      "an executor node not heard from this long gets no new work")                               \
    X(STR, auth_jwt_secret, "auth.jwt_secret", "", 0, 0,                                          \
      "HS256 secret for access tokens, >= 64 bytes (default: data_dir/jwt.key, made at start)")  \
    X(INT, auth_jwt_ttl_s, "auth.jwt_ttl_s", 900, 60, 86400, "access token (JWT) lifetime")     \
    X(INT, auth_refresh_ttl_s, "auth.refresh_ttl_s", 1209600, 300, 31536000,                      \
      "refresh token lifetime")                                                                   \
    X(STR, auth_admin_key, "auth.admin_key", "", 0, 0,                                            \
      "a pre-seeded admin API key (>= 32 bytes); when set no key is generated at first start")   \
    X(INT, auth_login_attempts_per_minute, "auth.login_attempts_per_minute", 5, 1, 100000,        \
      "failed logins allowed per user name and per client IP per minute")                        \
    X(INT, ratelimit_per_key_per_minute, "ratelimit.per_key_per_minute", 100, 0, 10000000,        \
      "requests per minute per API key or user (0: unlimited)")                                   \
    X(INT, ratelimit_global_per_second, "ratelimit.global_per_second", 1000, 0, 10000000,         \
      "authenticated requests per second for the whole gateway (0: unlimited)")           \
    X(INT, api_max_body_bytes, "api.max_body_bytes", 10485760, 1024, 1073741824,                  \
      "largest request body the API accepts (413 beyond)")                                        \
    X(INT, api_max_code_bytes, "api.max_code_bytes", 1048576, 1, 16777216,                        \
      "largest 'code' an execute request may carry (413 beyond)")                                 \
    X(INT, api_max_timeout_ms, "api.max_timeout_ms", 60000, 100, 86400000,                        \
      "largest 'timeout' a request may ask for (400 beyond)")                                     \
    X(INT, api_max_memory_mb, "api.max_memory_mb", 2048, 16, 1048576,                             \
      "largest 'memory_limit' a request may ask for (400 beyond)")                                \
    X(INT, api_max_cpu_cores, "api.max_cpu_cores", 2, 1, 1024,                                    \
      "largest 'cpu_limit' (cores) a request may ask for (400 beyond)")                           \
    X(INT, api_max_disk_mb, "api.max_disk_mb", 2048, 1, 1048576,                                  \
      "largest sandbox disk (tmpfs) a request may ask for (400 beyond)")                          \
    X(INT, api_default_sandbox_timeout_s, "api.default_sandbox_timeout_s", 300, 1, 604800,        \
      "idle timeout of a sandbox created without one")                                            \
    X(INT, api_max_sandbox_timeout_s, "api.max_sandbox_timeout_s", 86400, 1, 604800,              \
      "largest sandbox idle timeout a request may ask for")                                       \
    X(INT, api_artifacts_max_bytes, "api.artifacts_max_bytes", 1048576, 0, 3145728,              \
      "data returned per artifact (base64) in execute results; larger ones are listed only")     \
    X(INT, api_place_timeout_ms, "api.place_timeout_ms", 15000, 100, 600000,                      \
      "how long a request may wait for the scheduler's placement")                                 \
    X(INT, ws_ping_interval_s, "ws.ping_interval_s", 30, 1, 3600,                                 \
      "WebSocket: seconds between the server's PINGs on a connection")                           \
    X(INT, ws_pong_timeout_s, "ws.pong_timeout_s", 10, 1, 3600,                                   \
      "WebSocket: a connection with no PONG this long after a PING is dropped (close 1011)")     \
    X(INT, ws_session_idle_s, "ws.session_idle_s", 600, 1, 604800,                                \
      "WebSocket: a session with no connection this long expires; its sandbox is destroyed")     \
    X(INT, ws_max_message_bytes, "ws.max_message_bytes", 1048576, 128, 67108864,                  \
      "WebSocket: largest client message after reassembly (close 1009 beyond)")                  \
    X(INT, ws_max_frame_bytes, "ws.max_frame_bytes", 1048576, 128, 67108864,                      \
      "WebSocket: largest client frame (close 1009 beyond)")                                     \
    X(INT, ws_messages_per_second, "ws.messages_per_second", 50, 1, 1000000,                      \
      "WebSocket: client messages per second per connection (burst: 2 s worth)")                 \
    X(INT, ws_max_sessions_per_key, "ws.max_sessions_per_key", 16, 1, 1000000,                    \
      "WebSocket: open connections per principal (HTTP 429 before the upgrade beyond)")          \
    X(INT, ws_max_sessions, "ws.max_sessions", 10000, 1, 1000000,                                 \
      "WebSocket: open connections in all (HTTP 503 before the upgrade beyond)")                 \
    X(INT, ws_max_output_bytes, "ws.max_output_bytes", 4194304, 65536, 1073741824,                \
      "WebSocket: queued unsent output per connection; half stops reading, all closes 1008")     \
    X(STR, playground_dir, "playground.dir", "", 0, 0,                                           \
      "the playground page's files (default: gateway/playground in the source tree, else "      \
      "/usr/share/soulbox/playground)")                                                          \
    X(STR, playground_vendor_dir, "playground.vendor_dir", "", 0, 0,                             \
      "the playground's npm assets, served as /playground/vendor/ (default: the source tree's "  \
      ".cache/playground/node_modules, else /usr/share/soulbox/playground-vendor)")

#define SB__CFG_CTYPE_STR char *
#define SB__CFG_CTYPE_INT int64_t
#define SB__CFG_CTYPE_BOOL int

typedef struct {
#define SB__CFG_FIELD(type, field, key, def, min, max, help) SB__CFG_CTYPE_##type field;
    SB_CONFIG_KEYS(SB__CFG_FIELD)
#undef SB__CFG_FIELD
    char *config_file; /* the file that was read, or NULL */
} sb_config_t;

/* sb_config_load fills cfg from defaults, the config file, the environment and argv (flags
 * only: the caller strips the subcommand).  Unknown flags are left in *rest (argv order,
 * non-flag arguments included) for the subcommand.  On failure prints the reason into err and
 * returns SB_ECONFIG; cfg must still be released with sb_config_fini. */
int sb_config_load(sb_config_t *cfg, int argc, char **argv, char **env, int *nrest, char **rest,
                   char *err, size_t errcap);
/* sb_config_set sets one key from text, validating it. */
int sb_config_set(sb_config_t *cfg, const char *key, const char *value, char *err, size_t errcap);
void sb_config_fini(sb_config_t *cfg);
/* sb_config_usage prints every key with its default and help to f (a FILE *). */
void sb_config_usage(void *f);

/* sb_split_list splits a comma-separated list in place; returns the count (max entries). */
size_t sb_split_list(char *s, char **out, size_t max);

#endif
