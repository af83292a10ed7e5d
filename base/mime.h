/* mime.h: a media type from a file name's extension.  Pure; thread-safe. */
#ifndef SB_MIME_H
#define SB_MIME_H

/* sb_mime_type returns the media type of path's extension (case-insensitive), or
 * "application/octet-stream".  Static strings. */
const char *sb_mime_type(const char *path);

#endif
