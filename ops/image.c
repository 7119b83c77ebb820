/*
** image.c — image files: vl_image_read/write for PNG and JPEG through
** libavcodec (one packet, one frame) and binary PPM/PGM parsed here. The
** FFmpeg setup and helpers shared with video are in ops/media.c
** (media_internal.h).
*/
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "media_internal.h"


/* An image as uint8 [H,W,C] HWC, C = 1 or 3. */
static vl_tensor *hwc_new(int64_t h, int64_t w, int64_t c) {
  int64_t shape[3] = {h, w, c};
  return vl_empty(3, shape, VL_UINT8);
}

/* The output layout of an HWC image: gray/colour as asked, CHW if asked. */
static vl_tensor *finish_image(vl_tensor *img, bool chw, bool gray) {
  if (img == NULL) return NULL;
  int64_t h = img->shape[0], w = img->shape[1], c = img->shape[2];
  int64_t oc = gray ? 1 : 3;
  vl_tensor *out = img;
  if (c != oc) {
    out = hwc_new(h, w, oc);
    if (out == NULL) {
      vl_tensor_release(img);
      return NULL;
    }
    const uint8_t *s = vl_data_ptr(img);
    uint8_t *d = vl_data_ptr(out);
    int64_t n = h * w;
    if (oc == 1)
      for (int64_t i = 0; i < n; i++) d[i] = luma(s + 3 * i);
    else
      for (int64_t i = 0; i < n; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i];
    vl_tensor_release(img);
  }
  if (!chw) return out;
  int perm[3] = {2, 0, 1};
  vl_tensor *p = vl_permute(out, perm);
  vl_tensor *r = p ? vl_contiguous(p) : NULL;
  vl_tensor_release(p);
  vl_tensor_release(out);
  return r;
}

/* Read the whole (small) file into an AVPacket. */
static int slurp_packet(const char *op, const char *path, AVPacket *pkt) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return io_fail(VL_EIO, op, path, "cannot open (%s)", strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || sb.st_size > MEDIA_IMAGE_MAX_FILE) {
    fclose(f);
    return io_fail(VL_EIO, op, path, "file too large (%lld bytes, limit %lld)", (long long)sb.st_size,
                   (long long)MEDIA_IMAGE_MAX_FILE);
  }
  if (av_new_packet(pkt, (int)sb.st_size) < 0) {
    fclose(f);
    return vl_error(VL_ENOMEM, "%s: %s: out of memory", op, path);
  }
  size_t got = fread(pkt->data, 1, (size_t)sb.st_size, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || got != (size_t)sb.st_size) return io_fail(VL_EIO, op, path, "read failed");
  return VL_OK;
}

static vl_tensor *image_read_av(const char *op, const char *path, enum AVCodecID id, const char *what) {
  AVPacket *pkt = av_packet_alloc();
  AVFrame *fr = av_frame_alloc();
  AVCodecContext *dec = NULL;
  vl_tensor *img = NULL;
  struct SwsContext *sws = NULL;
  uint8_t *sc[4] = {NULL};
  int sls[4];
  if (pkt == NULL || fr == NULL) {
    vl_error(VL_ENOMEM, "%s: %s: out of memory", op, path);
    goto done;
  }
  if (slurp_packet(op, path, pkt) != VL_OK) goto done;
  const AVCodec *codec = avcodec_find_decoder(id);
  dec = codec ? avcodec_alloc_context3(codec) : NULL;
  if (dec == NULL) {
    io_fail(VL_EFORMAT, op, path, "no %s decoder in FFmpeg", what);
    goto done;
  }
  dec->thread_count = 1;
  dec->max_pixels = vl__media_max_pixels();
  int ret = avcodec_open2(dec, codec, NULL);
  if (ret < 0) {
    io_fail(VL_EFORMAT, op, path, "cannot open the %s decoder: %s", what, AVTEXT(ret));
    goto done;
  }
  ret = avcodec_send_packet(dec, pkt);
  if (ret >= 0) ret = avcodec_send_packet(dec, NULL);
  if (ret >= 0 || ret == AVERROR_EOF) ret = avcodec_receive_frame(dec, fr);
  if (ret < 0) {
    io_fail(VL_EFORMAT, op, path, "%s decoding failed: %s", what, AVTEXT(ret));
    goto done;
  }
  if (fr->width <= 0 || fr->height <= 0 || fr->width > MEDIA_MAX_SIDE || fr->height > MEDIA_MAX_SIDE) {
    io_fail(VL_EFORMAT, op, path, "%s image of %dx%d, expected 1..%d on each side", what, fr->width, fr->height,
            MEDIA_MAX_SIDE);
    goto done;
  }
  int full = 1;
  enum AVPixelFormat sf = vl__media_dejpeg((enum AVPixelFormat)fr->format, &full);
  if (fr->color_range == AVCOL_RANGE_MPEG && sf == (enum AVPixelFormat)fr->format) full = 0;
  const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(sf);
  bool src_gray = d && d->nb_components <= 2 && !(d->flags & AV_PIX_FMT_FLAG_PAL);
  int64_t H = fr->height, W = fr->width, C = src_gray ? 1 : 3;
  enum AVPixelFormat df = src_gray ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_RGB24;
  img = hwc_new(H, W, C);
  if (img == NULL) goto done;
  uint8_t *dst = vl_data_ptr(img);
  if (sf == df) {
    for (int64_t y = 0; y < H; y++) memcpy(dst + y * W * C, fr->data[0] + y * fr->linesize[0], (size_t)(W * C));
    goto done;
  }
  sws = sws_getContext((int)W, (int)H, sf, (int)W, (int)H, df, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT,
                       NULL, NULL, NULL);
  if (sws == NULL || av_image_alloc(sc, sls, (int)W, (int)H, df, 64) < 0) {
    io_fail(VL_EFORMAT, op, path, "cannot convert %s %s pixels to %s", what,
            av_get_pix_fmt_name(sf) ? av_get_pix_fmt_name(sf) : "?", av_get_pix_fmt_name(df));
    vl_tensor_release(img);
    img = NULL;
    goto done;
  }
  sws_setColorspaceDetails(sws, vl__media_sws_coeffs(fr->colorspace), full, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                           1 << 16, 1 << 16);
  sws_scale(sws, (const uint8_t *const *)fr->data, fr->linesize, 0, (int)H, sc, sls);
  for (int64_t y = 0; y < H; y++) memcpy(dst + y * W * C, sc[0] + y * sls[0], (size_t)(W * C));
done:
  if (sc[0]) av_freep(&sc[0]);
  sws_freeContext(sws);
  avcodec_free_context(&dec);
  av_frame_free(&fr);
  av_packet_free(&pkt);
  return img;
}

/* Netpbm header token: skips whitespace and # comments. */
static int pnm_int(FILE *f, int64_t *out) {
  int ch = getc(f);
  for (;;) {
    while (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f') ch = getc(f);
    if (ch != '#') break;
    while (ch != EOF && ch != '\n' && ch != '\r') ch = getc(f);
  }
  if (ch < '0' || ch > '9') return -1;
  int64_t v = 0;
  while (ch >= '0' && ch <= '9') {
    if (v > (INT64_MAX - 9) / 10) return -1;
    v = v * 10 + (ch - '0');
    ch = getc(f);
  }
  /* exactly one whitespace character ends the last header field */
  if (ch != EOF && !(ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f')) return -1;
  *out = v;
  return 0;
}

static vl_tensor *pnm_read(const char *op, const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    io_fail(VL_EIO, op, path, "cannot open (%s)", strerror(errno));
    return NULL;
  }
  int a = getc(f), b = getc(f);
  int64_t w, h, maxv;
  const char *field = "width";
  if (pnm_int(f, &w) != 0 || (field = "height", pnm_int(f, &h)) != 0 || (field = "maxval", pnm_int(f, &maxv)) != 0) {
    fclose(f);
    io_fail(VL_EFORMAT, op, path, "P%c header: bad %s (expected a decimal number)", b, field);
    return NULL;
  }
  (void)a;
  int64_t c = b == '6' ? 3 : 1;
  if (w < 1 || h < 1 || w > MEDIA_MAX_SIDE || h > MEDIA_MAX_SIDE || maxv < 1 || maxv > 65535) {
    fclose(f);
    io_fail(VL_EFORMAT, op, path, "P%c header: %lldx%lld with maxval %lld, expected 1..%d on each side and maxval 1..65535",
            b, (long long)w, (long long)h, (long long)maxv, MEDIA_MAX_SIDE);
    return NULL;
  }
  int64_t bps = maxv > 255 ? 2 : 1;
  int64_t need = w * h * c * bps;
  long pos = ftell(f);
  struct stat sb;
  if (pos < 0 || fstat(fileno(f), &sb) != 0 || sb.st_size - pos < need) {
    fclose(f);
    io_fail(VL_EFORMAT, op, path, "truncated: the header says %lldx%lld (%lld bytes of pixels), %lld bytes follow it",
            (long long)w, (long long)h, (long long)need, (long long)(pos < 0 ? 0 : sb.st_size - pos));
    return NULL;
  }
  vl_tensor *img = hwc_new(h, w, c);
  if (img == NULL) {
    fclose(f);
    return NULL;
  }
  uint8_t *d = vl_data_ptr(img);
  int64_t n = w * h * c;
  bool ok;
  if (bps == 1) {
    ok = fread(d, 1, (size_t)n, f) == (size_t)n;
    if (ok && maxv != 255)
      for (int64_t i = 0; i < n; i++) d[i] = (uint8_t)((VL_MIN(d[i], maxv) * 255 + maxv / 2) / maxv);
  } else {
    uint8_t *tmp = malloc((size_t)n * 2);
    ok = tmp && fread(tmp, 1, (size_t)n * 2, f) == (size_t)n * 2;
    if (ok)
      for (int64_t i = 0; i < n; i++) {
        int64_t v = VL_MIN((int64_t)(tmp[2 * i] << 8 | tmp[2 * i + 1]), maxv);
        d[i] = (uint8_t)((v * 255 + maxv / 2) / maxv);
      }
    free(tmp);
  }
  fclose(f);
  if (!ok) {
    vl_tensor_release(img);
    io_fail(VL_EIO, op, path, "read failed");
    return NULL;
  }
  return img;
}

vl_tensor *vl_image_read(const char *path, bool chw, bool gray) {
  const char *op = "image.read";
  vl__media_init();
  if (vl__media_check_readable(op, path) != VL_OK) return NULL;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    io_fail(VL_EIO, op, path, "cannot open (%s)", strerror(errno));
    return NULL;
  }
  unsigned char m[8] = {0};
  size_t n = fread(m, 1, sizeof m, f);
  fclose(f);
  vl_tensor *img;
  if (n >= 8 && memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0) img = image_read_av(op, path, AV_CODEC_ID_PNG, "PNG");
  else if (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF)
    img = image_read_av(op, path, AV_CODEC_ID_MJPEG, "JPEG");
  else if (n >= 2 && m[0] == 'P' && (m[1] == '5' || m[1] == '6')) img = pnm_read(op, path);
  else {
    char shown[40] = "";
    size_t k = 0;
    for (size_t i = 0; i < n && i < 4; i++)
      k += (size_t)snprintf(shown + k, sizeof shown - k, "%s%02x", i ? " " : "", m[i]);
    io_fail(VL_EFORMAT, op, path,
            "not a PNG, JPEG or binary PPM/PGM (P6/P5) image (the file starts with bytes %s)",
            n ? shown : "(none: it is empty)");
    return NULL;
  }
  return finish_image(img, chw, gray);
}

static int encode_one(const char *op, const char *path, const AVCodec *codec, AVCodecContext *e, AVFrame *fr) {
  AVPacket *pkt = av_packet_alloc();
  if (pkt == NULL) return vl_error(VL_ENOMEM, "%s: %s: out of memory", op, path);
  int ret = avcodec_open2(e, codec, NULL);
  if (ret >= 0) ret = avcodec_send_frame(e, fr);
  if (ret >= 0) ret = avcodec_send_frame(e, NULL);
  if (ret >= 0) ret = avcodec_receive_packet(e, pkt);
  int st;
  if (ret < 0) st = io_fail(VL_EFORMAT, op, path, "codec %s: encoding failed: %s", codec->name, AVTEXT(ret));
  else st = vl_write_file_atomic(path, pkt->data, (size_t)pkt->size);
  av_packet_free(&pkt);
  return st;
}

int vl_image_write(const char *path, const vl_tensor *img, bool chw, int quality) {
  const char *op = "image.write";
  vl__media_init();
  const char *ext = vl__media_ext_of(path);
  int kind = ext_is(ext, "png") ? 1 : (ext_is(ext, "jpg") || ext_is(ext, "jpeg")) ? 2 : ext_is(ext, "ppm") ? 3
             : ext_is(ext, "pgm") ? 4 : 0;
  if (kind == 0)
    return io_fail(VL_EARG, op, path, "unknown extension '.%s' (expected .png, .jpg, .jpeg, .ppm or .pgm)", ext);
  char sb[VL_SHAPE_STR];
  int64_t H, W, C;
  if (img->ndim == 2) {
    H = img->shape[0], W = img->shape[1], C = 1;
  } else if (img->ndim == 3) {
    C = img->shape[chw ? 0 : 2];
    H = img->shape[chw ? 1 : 0];
    W = img->shape[chw ? 2 : 1];
  } else {
    return io_fail(VL_ESHAPE, op, path, "image has shape %s, expected %s or [H,W]",
                   vl_shape_str(img->ndim, img->shape, sb), chw ? "[C,H,W]" : "[H,W,C]");
  }
  if ((C != 1 && C != 3) || H < 1 || W < 1 || H > MEDIA_MAX_SIDE || W > MEDIA_MAX_SIDE)
    return io_fail(VL_ESHAPE, op, path, "image has shape %s, expected %s with C = 1 or 3 and 1..%d pixels a side",
                   vl_shape_str(img->ndim, img->shape, sb), chw ? "[C,H,W]" : "[H,W,C]", MEDIA_MAX_SIDE);
  if (kind == 3 && C != 3) return io_fail(VL_ESHAPE, op, path, ".ppm holds RGB: expected 3 channels, got %lld", (long long)C);
  if (kind == 4 && C != 1) return io_fail(VL_ESHAPE, op, path, ".pgm holds gray: expected 1 channel, got %lld", (long long)C);
  if (quality < 0 || quality > 100) return io_fail(VL_EARG, op, path, "quality %d, expected 1..100", quality);
  /* HWC uint8 contiguous */
  vl_tensor *v;
  if (img->ndim == 3 && chw) {
    int perm[3] = {1, 2, 0};
    v = vl_permute(img, perm);
  } else {
    v = vl_reshape(img, 3, (int64_t[3]){H, W, C});
  }
  if (v == NULL) return vl_last_status();
  vl_tensor *b = vl__media_as_bytes(op, path, v);
  vl_tensor_release(v);
  if (b == NULL) {
    if (vl_last_status() == VL_EDTYPE)
      return io_fail(VL_EDTYPE, op, path, "image has dtype %s, expected uint8 or a float dtype (values in [0, 1])",
                     vl_dtype_name(img->dtype));
    return vl_last_status();
  }
  const uint8_t *px = vl_data_ptr(b);
  int st;
  if (kind >= 3) {
    char hdr[64];
    int hn = snprintf(hdr, sizeof hdr, "P%c\n%lld %lld\n255\n", kind == 3 ? '6' : '5', (long long)W, (long long)H);
    size_t n = (size_t)(H * W * C);
    uint8_t *buf = malloc((size_t)hn + n);
    if (buf == NULL) {
      vl_tensor_release(b);
      return vl_error(VL_ENOMEM, "%s: %s: out of memory", op, path);
    }
    memcpy(buf, hdr, (size_t)hn);
    memcpy(buf + hn, px, n);
    st = vl_write_file_atomic(path, buf, (size_t)hn + n);
    free(buf);
    vl_tensor_release(b);
    return st;
  }
  const AVCodec *codec = avcodec_find_encoder(kind == 1 ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG);
  AVCodecContext *e = codec ? avcodec_alloc_context3(codec) : NULL;
  AVFrame *fr = av_frame_alloc();
  struct SwsContext *sws = NULL;
  if (codec == NULL || e == NULL || fr == NULL) {
    st = codec ? vl_error(VL_ENOMEM, "%s: %s: out of memory", op, path)
               : io_fail(VL_EFORMAT, op, path, "no %s encoder in FFmpeg", kind == 1 ? "PNG" : "JPEG");
    goto done;
  }
  enum AVPixelFormat pf = kind == 1 ? (C == 1 ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_RGB24) : AV_PIX_FMT_YUVJ444P;
  e->width = (int)W;
  e->height = (int)H;
  e->pix_fmt = pf;
  e->time_base = (AVRational){1, 25};
  e->thread_count = 1;
  if (kind == 2) {
    int q = quality ? quality : 95;
    double qs = 1.0 + (100 - q) * 30.0 / 99.0;
    e->flags |= AV_CODEC_FLAG_QSCALE;
    e->global_quality = (int)lrint(FF_QP2LAMBDA * qs);
    e->qmin = 1;
    e->qmax = 31;
    e->color_range = AVCOL_RANGE_JPEG;
    e->strict_std_compliance = FF_COMPLIANCE_UNOFFICIAL;
  }
  fr->format = pf;
  fr->width = (int)W;
  fr->height = (int)H;
  fr->pts = 0;
  fr->quality = e->global_quality;
  if (av_frame_get_buffer(fr, 0) < 0) {
    st = vl_error(VL_ENOMEM, "%s: %s: out of memory", op, path);
    goto done;
  }
  if (kind == 1) {
    for (int64_t y = 0; y < H; y++) memcpy(fr->data[0] + y * fr->linesize[0], px + y * W * C, (size_t)(W * C));
  } else {
    enum AVPixelFormat sf = C == 1 ? AV_PIX_FMT_GRAY8 : AV_PIX_FMT_RGB24;
    sws = sws_getContext((int)W, (int)H, sf, (int)W, (int)H, AV_PIX_FMT_YUV444P,
                         SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (sws == NULL) {
      st = io_fail(VL_EFORMAT, op, path, "cannot convert RGB for JPEG");
      goto done;
    }
    sws_setColorspaceDetails(sws, sws_getCoefficients(SWS_CS_DEFAULT), 1, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                             1 << 16, 1 << 16);
    const uint8_t *planes[4] = {px, NULL, NULL, NULL};
    int ls[4] = {(int)(W * C), 0, 0, 0};
    sws_scale(sws, planes, ls, 0, (int)H, fr->data, fr->linesize);
  }
  st = encode_one(op, path, codec, e, fr);
done:
  sws_freeContext(sws);
  av_frame_free(&fr);
  avcodec_free_context(&e);
  vl_tensor_release(b);
  return st;
}
