/* mime.c: the one extension -> media type table (artifacts, file downloads). */
#include "mime.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *ext, *mime;
} mime_table[] = {
    {"png", "image/png"},         {"jpg", "image/jpeg"},       {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},         {"svg", "image/svg+xml"},    {"webp", "image/webp"},
    {"bmp", "image/bmp"},         {"ico", "image/x-icon"},     {"pdf", "application/pdf"},
    {"html", "text/html"},        {"htm", "text/html"},        {"css", "text/css"},
    {"js", "text/javascript"},    {"mjs", "text/javascript"},  {"json", "application/json"},
    {"txt", "text/plain"},        {"log", "text/plain"},       {"md", "text/markdown"},
    {"csv", "text/csv"},          {"tsv", "text/tab-separated-values"},
    {"xml", "application/xml"},   {"yaml", "application/yaml"}, {"yml", "application/yaml"},
    {"py", "text/x-python"},      {"c", "text/x-c"},           {"zip", "application/zip"},
    {"gz", "application/gzip"},   {"tar", "application/x-tar"}, {"wav", "audio/wav"},
    {"mp3", "audio/mpeg"},        {"mp4", "video/mp4"},
    {"wasm", "application/wasm"}, {"woff2", "font/woff2"},
    {"parquet", "application/vnd.apache.parquet"},
};

const char *
sb_mime_type(const char *path)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof mime_table / sizeof mime_table[0]; i++)
            if (strcasecmp(dot + 1, mime_table[i].ext) == 0)
                return mime_table[i].mime;
    return "application/octet-stream";
}
