/*
** media_internal.h — what ops/media.c (video) and ops/image.c (images)
** share: FFmpeg's one-time setup and error text, pixel-format helpers,
** the byte conversion of written frames, file checks and size limits.
*/
#ifndef VL_MEDIA_INTERNAL_H
#define VL_MEDIA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <strings.h>

#include <libavutil/pixfmt.h>

#include "io_internal.h"

#define MEDIA_MAX_SIDE 32768             /* largest width or height accepted */
#define MEDIA_IMAGE_MAX_FILE (1ll << 30) /* largest image file read, bytes */

/* FFmpeg's log routed to vl (silent unless VLUA_FFMPEG_LOG); call before
   any FFmpeg use on a thread: it also clears that thread's last message. */
void vl__media_init(void);
/* av_strerror's text, with FFmpeg's last logged error appended. */
const char *vl__media_av_text(int err, char *buf, size_t n);
#define AVTEXT(err) vl__media_av_text((err), (char[300]){0}, 300)

/* Deprecated yuvj formats -> yuv, setting *full for full range. */
enum AVPixelFormat vl__media_dejpeg(enum AVPixelFormat f, int *full);
/* swscale's YUV coefficients for an AVColorSpace. */
const int *vl__media_sws_coeffs(int colorspace);
/* A contiguous uint8 copy (or reference) of t; floats in [0,1] scaled. */
vl_tensor *vl__media_as_bytes(const char *op, const char *path, const vl_tensor *t);
/* The extension after the last dot of the file name ("" if none). */
const char *vl__media_ext_of(const char *path);
/* Largest picture a decoder may allocate (under vl's memory limit). */
int64_t vl__media_max_pixels(void);
/* A missing file or a directory gets its own message. */
int vl__media_check_readable(const char *op, const char *path);

static inline bool ext_is(const char *ext, const char *a) { return strcasecmp(ext, a) == 0; }

/* BT.601 luma of an RGB pixel, rounded. */
static inline uint8_t luma(const uint8_t *p) {
  return (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
}

#endif
