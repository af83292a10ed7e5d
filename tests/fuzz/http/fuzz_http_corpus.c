/* fuzz_http_corpus.c: runs fuzz_http's entry point over built-in nasty inputs (and every
 * prefix and read-split of a pipelined batch) so the fuzz target is exercised in every build;
 * arguments, if any, are files to replay (a crash reproducer from the fuzzer). */
#include "test.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_http_teardown(void);

static void
run(const char *s, size_t n)
{
    LLVMFuzzerTestOneInput((const uint8_t *)s, n);
}

int
main(int argc, char **argv)
{
    static const char *nasty[] = {
        "",
        "\x00",
        "\x00\x00GET / HTTP/1.1\r\n\r\n",
        "\x00\x00GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "\x01\x00GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        "\x00\x01GET /defer HTTP/1.1\r\n\r\nGET /defer HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        "\x00\x02GET /defer HTTP/1.1\r\n\r\nPOST /defer HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /defer HTTP/1.1\r\n\r\n",
        "\x00\x00POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: x\r\n\r\n",
        "\x00\x00POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "\x00\x00POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "\x00\x00POST /echo HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        "\x00\x00POST /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        "\x00\x00POST /nope HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        "\x00\x00PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        "\x00\x00GET /items/%00/sub/x HTTP/1.1\r\n\r\n",
        "\x00\x00GET /items/a%2Fb/sub/%zz HTTP/1.1\r\n\r\n",
        "\x00\x00GET /items/a/sub/b?q=%41%4&q=++ HTTP/1.1\r\n\r\n",
        "\x00\x00GET http://host HTTP/1.1\r\n\r\nGET http://h/files/x?y HTTP/1.1\r\n\r\n",
        "\x00\x00GET * HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\n",
        "\x00\x00OPTIONS /echo HTTP/1.1\r\nOrigin: https://a.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: \x7f\r\n\r\n",
        "\x00\x00CONNECT a:443 HTTP/1.1\r\n\r\nxx",
        "\x00\x00GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw bytes",
        "\x00\x00GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /stream HTTP/1.0\r\n\r\n",
        "\x00\x00HEAD /stream HTTP/1.1\r\n\r\nHEAD /health HTTP/1.1\r\n\r\n",
        "\x00\x00GET /health HTTP/1.1\r\nX-Request-Id: ../../\r\nX-Request-Id: a\r\n\r\n",
        "\x00\x00GET /health HTTP/1.1\r\n: empty\r\nX:\r\nY: \r\n\r\n",
        "\x00\x00GET /health HTTP/1.1\r\n\tfolded\r\n\r\n",
        "\x00\x00\r\n\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        "\x03\x01GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\nGET /",
        "\x00\x00PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "\x00\x00GET /health HTTP/9.9\r\n\r\n",
        "\x00\x00GET /\xff\xfe HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++)
        run(nasty[i], strlen(nasty[i]) + (i < 2 ? 1 : 0) + (i == 2 ? 0 : 0));
    /* Prefix splits and read sizes over a pipelined batch with every kind of body. */
    static const char batch[] =
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
        "POST /defer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        "GET /items/1/sub/2?q=x HTTP/1.1\r\nOrigin: https://b.example\r\n\r\n"
        "GET /stream HTTP/1.1\r\n\r\n"
        "DELETE /health HTTP/1.1\r\n\r\n";
    char buf[sizeof(batch) + 2];
    memcpy(buf + 2, batch, sizeof(batch) - 1);
    for (int cut = 0; cut < 40; cut++)
        for (int fl = 0; fl < 4; fl++) {
            buf[0] = (char)cut;
            buf[1] = (char)fl;
            run(buf, sizeof(batch) + 1);
        }
    buf[0] = 0;
    buf[1] = 0;
    for (size_t n = 2; n <= sizeof(batch) + 1; n++)
        run(buf, n);
    /* A head far over the limits, and many headers. */
    static char big[70000];
    size_t n = (size_t)snprintf(big, sizeof(big), "%c%cGET /health HTTP/1.1\r\nX: ", 0, 0);
    memset(big + n, 'a', 5000);
    n += 5000;
    run(big, n);
    n = (size_t)snprintf(big, sizeof(big), "%c%cGET /health HTTP/1.1\r\n", 7, 0);
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "H%d: v\r\n", i);
    run(big, n);
    /* Many pipelined requests while one is deferred: the stash cap. */
    n = (size_t)snprintf(big, sizeof(big), "%c%cGET /defer HTTP/1.1\r\n\r\n", 0, 0);
    while (n + 40 < sizeof(big))
        n += (size_t)snprintf(big + n, sizeof(big) - n, "GET /health HTTP/1.1\r\n\r\n");
    run(big, n);
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        CHECK(f);
        static char file[1 << 20];
        size_t len = fread(file, 1, sizeof(file), f);
        fclose(f);
        run(file, len);
    }
    CHECK_EQ(fuzz_http_teardown(), 0);
    sb_test_ok("http fuzz corpus");
    return sb_test_done();
}
