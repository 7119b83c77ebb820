/*
** media.c — video files through FFmpeg (libavformat, libavcodec,
** libswscale, libavutil): vl_video_probe/read/write, streaming clips
** (vl_video_clips_*), and the FFmpeg setup and helpers ops/image.c shares
** (media_internal.h).
**
** Reading: open the container, pick the best video stream, decode with
** vl_get_num_threads() threads, convert each frame to RGB24 (or yuv444p
** planes) with libswscale into a padded scratch frame, copy it into the
** output tensor. Frame i is the one shown at i / fps after the stream's
** start (constant frame rate). A read starting at frame s > 0 seeks to the
** keyframe at or before s (av_seek_frame, AVSEEK_FLAG_BACKWARD), decodes
** forward and drops frames before s; when the demuxer lands after s (its
** index holds decode times), it backs off and seeks again.
**
** Writing: a temporary file next to the target (ops/io.c's atomic writes)
** behind a custom AVIOContext (write + seek, which the mp4 muxer needs to
** patch its header), fsync'd and renamed into place; on error the
** temporary is removed and the old file left untouched.
**
** FFmpeg's log goes through media_log: silent unless VLUA_FFMPEG_LOG is
** set; its last line of level error or worse on this thread is appended
** to our error messages ("moov atom not found").
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "media_internal.h"

#define MEDIA_AVIO_BUF 65536                 /* custom AVIO buffer, bytes */
#define MEDIA_FIRST_CHUNK (256ll << 20)      /* bytes of frames allocated before the count is known */
#define MEDIA_SEEK_TRIES 6                   /* back-offs when a seek lands after the target */
#define MEDIA_LOG_MAX 200
#define MEDIA_SEEK_GAP 64                    /* between clips, frames skipped by seeking rather than decoding */

/* ------------------------------------------------------------------ */
/* FFmpeg log and error text                                           */
/* ------------------------------------------------------------------ */

static _Thread_local char media_last_log[MEDIA_LOG_MAX];
static int media_log_level = AV_LOG_QUIET; /* what is printed to stderr */
static pthread_once_t media_once = PTHREAD_ONCE_INIT;

static void media_log(void *avcl, int level, const char *fmt, va_list vl) {
  if (level > AV_LOG_WARNING && level > media_log_level) return;
  char line[MEDIA_LOG_MAX];
  int prefix = 1;
  va_list copy;
  va_copy(copy, vl);
  av_log_format_line2(avcl, level, fmt, copy, line, sizeof line, &prefix);
  va_end(copy);
  if (level <= AV_LOG_ERROR) {
    /* drop the "[mov,mp4,... @ 0x55d0...] " context prefixes */
    const char *m = line;
    while (m[0] == '[' && strchr(m, ']')) {
      m = strchr(m, ']') + 1;
      while (*m == ' ') m++;
    }
    size_t n = strlen(m);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' ' || m[n - 1] == '.')) n--;
    if (n > 0) {
      memmove(media_last_log, m, n);
      media_last_log[n] = '\0';
    }
  }
  if (level <= media_log_level) fputs(line, stderr);
}

static void media_init_once(void) {
  const char *e = getenv("VLUA_FFMPEG_LOG");
  if (e && *e) {
    static const struct { const char *name; int level; } levels[] = {
        {"quiet", AV_LOG_QUIET}, {"error", AV_LOG_ERROR}, {"warning", AV_LOG_WARNING},
        {"info", AV_LOG_INFO},   {"debug", AV_LOG_DEBUG}, {"1", AV_LOG_WARNING}};
    media_log_level = AV_LOG_WARNING;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
      if (strcmp(e, levels[i].name) == 0) media_log_level = levels[i].level;
  }
  av_log_set_level(media_log_level > AV_LOG_ERROR ? media_log_level : AV_LOG_ERROR);
  av_log_set_callback(media_log);
}

void vl__media_init(void) {
  pthread_once(&media_once, media_init_once);
  media_last_log[0] = '\0';
}

/* "Invalid data found when processing input (moov atom not found)" */
const char *vl__media_av_text(int err, char *buf, size_t n) {
  char e[AV_ERROR_MAX_STRING_SIZE];
  av_strerror(err, e, sizeof e);
  if (media_last_log[0] && strstr(e, media_last_log) == NULL) snprintf(buf, n, "%s (%s)", e, media_last_log);
  else snprintf(buf, n, "%s", e);
  return buf;
}


/* Frames may hold deprecated yuvj formats: map them to yuv + full range. */
enum AVPixelFormat vl__media_dejpeg(enum AVPixelFormat f, int *full) {
  switch (f) {
    case AV_PIX_FMT_YUVJ420P: *full = 1; return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: *full = 1; return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: *full = 1; return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: *full = 1; return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: *full = 1; return AV_PIX_FMT_YUV411P;
    default: return f;
  }
}

const int *vl__media_sws_coeffs(int colorspace) {
  int cs = SWS_CS_DEFAULT;
  switch (colorspace) {
    case AVCOL_SPC_BT709: cs = SWS_CS_ITU709; break;
    case AVCOL_SPC_FCC: cs = SWS_CS_FCC; break;
    case AVCOL_SPC_SMPTE240M: cs = SWS_CS_SMPTE240M; break;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: cs = SWS_CS_BT2020; break;
    default: break;
  }
  return sws_getCoefficients(cs);
}

static int sws_flags_of(vl_resize_mode m) {
  switch (m) {
    case VL_RESIZE_AREA: return SWS_AREA;
    case VL_RESIZE_BICUBIC: return SWS_BICUBIC;
    default: return SWS_BILINEAR;
  }
}

int vl_resize_mode_from_name(const char *name, vl_resize_mode *out) {
  if (strcmp(name, "bilinear") == 0) *out = VL_RESIZE_BILINEAR;
  else if (strcmp(name, "area") == 0) *out = VL_RESIZE_AREA;
  else if (strcmp(name, "bicubic") == 0) *out = VL_RESIZE_BICUBIC;
  else return vl_error(VL_EARG, "resize: unknown mode '%s' (expected bilinear, area or bicubic)", name);
  return VL_OK;
}

/* Rounded, clamped byte of a float in [0, 1]. */
static inline uint8_t to_byte(double v) {
  if (!(v > 0)) return 0; /* NaN too */
  if (v >= 1) return 255;
  return (uint8_t)(v * 255.0 + 0.5);
}

/* A contiguous uint8 copy (or reference) of t; floats in [0,1] scaled. */
vl_tensor *vl__media_as_bytes(const char *op, const char *path, const vl_tensor *t) {
  if (t->dtype == VL_UINT8) return vl_contiguous(t);
  if (!vl_dtype_is_float(t->dtype)) {
    io_fail(VL_EDTYPE, op, path, "frames have dtype %s, expected uint8 or a float dtype (values in [0, 1])",
            vl_dtype_name(t->dtype));
    return NULL;
  }
  vl_tensor *c = vl_contiguous(t);
  if (c == NULL) return NULL;
  vl_tensor *out = vl_empty(c->ndim, c->shape, VL_UINT8);
  if (out == NULL) {
    vl_tensor_release(c);
    return NULL;
  }
  int64_t n = vl_numel(c);
  const void *src = vl_data_ptr(c);
  uint8_t *dst = vl_data_ptr(out);
  if (c->dtype == VL_FLOAT32) {
    const float *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = to_byte(s[i]);
  } else {
    for (int64_t i = 0; i < n; i++) dst[i] = to_byte(vl_load(src, i, c->dtype));
  }
  vl_tensor_release(c);
  return out;
}

const char *vl__media_ext_of(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(path, '.');
  if (dot == NULL || (slash && dot < slash)) return "";
  return dot + 1;
}

/* Largest picture a decoder may allocate: under vl's memory limit (when
   set) a picture of more pixels could not become a tensor anyway. */
int64_t vl__media_max_pixels(void) {
  size_t lim = vl_memory_limit();
  int64_t mp = INT_MAX;
  if (lim > 0 && (int64_t)(lim / 3) < mp) mp = (int64_t)(lim / 3);
  return mp > 0 ? mp : 1;
}

/* A path that is a directory gets its own message (FFmpeg says EISDIR
   late or not at all). */
int vl__media_check_readable(const char *op, const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0) return io_fail(VL_EIO, op, path, "cannot open (%s)", strerror(errno));
  if (S_ISDIR(sb.st_mode)) return io_fail(VL_EIO, op, path, "is a directory, expected a file");
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Reader                                                               */
/* ------------------------------------------------------------------ */

typedef struct reader {
  const char *op;
  char *path;
  AVFormatContext *fmt;
  AVCodecContext *dec;
  AVStream *st;
  int si;
  AVPacket *pkt;
  AVFrame *frame;
  struct SwsContext *sws;
  int sws_key[6];      /* source format, range, colour space, size of r->sws */
  AVFrame *out;        /* converted frame (padded); scratch: its planes */
  uint8_t *scratch[4];
  int scratch_ls[4];
  vl_video_info info;
  AVRational fps_q;
  int64_t out_h, out_w;
  vl_resize_mode resize;
  bool chw, yuv;
  size_t frame_bytes;   /* one output frame */
  int64_t next_index;   /* index of the next frame the decoder gives */
  bool need_index;      /* after a seek: take the index from the next frame's time */
  int64_t seek_pkt_ts;  /* time of the first packet sent after a seek (the keyframe) */
  bool eof_sent, done;
  int64_t st_start;     /* stream start, in stream time base (0 when unknown) */
} reader;

static int rfail(reader *r, vl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* "op: path: stream 0 (h264): what" */
static int rfail(reader *r, vl_status code, const char *fmt, ...) {
  char msg[IO_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (r->st) return vl_error(code, "%s: %s: stream %d (%s): %s", r->op, r->path, r->si, r->info.codec, msg);
  return vl_error(code, "%s: %s: %s", r->op, r->path, msg);
}

static void reader_free(reader *r) {
  if (r == NULL) return;
  avcodec_free_context(&r->dec);
  avformat_close_input(&r->fmt);
  av_packet_free(&r->pkt);
  av_frame_free(&r->frame);
  sws_freeContext(r->sws);
  av_frame_free(&r->out);
  free(r->path);
  free(r);
}

static void fill_info(reader *r) {
  vl_video_info *in = &r->info;
  AVStream *st = r->st;
  AVCodecParameters *par = st->codecpar;
  in->width = par->width;
  in->height = par->height;
  in->stream = r->si;
  const AVCodecDescriptor *d = avcodec_descriptor_get(par->codec_id);
  snprintf(in->codec, sizeof in->codec, "%s", d ? d->name : "unknown");
  const char *pf = av_get_pix_fmt_name((enum AVPixelFormat)par->format);
  snprintf(in->pixel_format, sizeof in->pixel_format, "%s", pf ? pf : "unknown");
  AVRational fr = av_guess_frame_rate(r->fmt, st, NULL);
  if (fr.num <= 0 || fr.den <= 0) fr = (AVRational){25, 1};
  r->fps_q = fr;
  in->fps = av_q2d(fr);
  double tb = av_q2d(st->time_base);
  r->st_start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
  in->start_time = st->start_time != AV_NOPTS_VALUE ? st->start_time * tb : 0;
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0) in->duration = st->duration * tb;
  else if (r->fmt->duration != AV_NOPTS_VALUE && r->fmt->duration > 0)
    in->duration = (double)r->fmt->duration / AV_TIME_BASE;
  else in->duration = 0;
  if (st->nb_frames > 0) {
    in->frames = st->nb_frames;
    in->frames_exact = true;
  } else {
    in->frames = (int64_t)llround(in->duration * in->fps);
    in->frames_exact = false;
  }
  in->bit_rate = par->bit_rate > 0 ? par->bit_rate : r->fmt->bit_rate;
  in->has_audio = false;
  for (unsigned i = 0; i < r->fmt->nb_streams; i++)
    if (r->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) in->has_audio = true;
}

/* Open the container and (when decode) the decoder. */
static reader *reader_open(const char *op, const char *path, bool decode) {
  vl__media_init();
  if (vl__media_check_readable(op, path) != VL_OK) return NULL;
  reader *r = calloc(1, sizeof *r);
  if (r == NULL || (r->path = strdup(path)) == NULL) {
    free(r);
    vl_error(VL_ENOMEM, "%s: out of memory", op);
    return NULL;
  }
  r->op = op;
  r->out_h = r->out_w = 0;
  /* files only: "file:" keeps a colon in the name from selecting a
     protocol, and the whitelist keeps playlists from opening URLs */
  size_t ulen = strlen(path) + 6;
  char *url = malloc(ulen);
  AVDictionary *dopts = NULL;
  if (url) snprintf(url, ulen, "file:%s", path);
  av_dict_set(&dopts, "protocol_whitelist", "file", 0);
  int ret = url ? avformat_open_input(&r->fmt, url, NULL, &dopts) : AVERROR(ENOMEM);
  av_dict_free(&dopts);
  free(url);
  if (ret < 0) {
    rfail(r, VL_EFORMAT, "cannot open as a video: %s", AVTEXT(ret));
    reader_free(r);
    return NULL;
  }
  ret = avformat_find_stream_info(r->fmt, NULL);
  if (ret < 0) {
    rfail(r, VL_EFORMAT, "cannot read the stream information: %s", AVTEXT(ret));
    reader_free(r);
    return NULL;
  }
  ret = av_find_best_stream(r->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  if (ret < 0) {
    rfail(r, VL_EFORMAT, "no video stream (%u streams): %s", r->fmt->nb_streams, AVTEXT(ret));
    reader_free(r);
    return NULL;
  }
  r->si = ret;
  r->st = r->fmt->streams[ret];
  fill_info(r);
  AVCodecParameters *par = r->st->codecpar;
  if (par->width <= 0 || par->height <= 0 || par->width > MEDIA_MAX_SIDE || par->height > MEDIA_MAX_SIDE) {
    rfail(r, VL_EFORMAT, "frame size %dx%d, expected 1..%d on each side", par->width, par->height, MEDIA_MAX_SIDE);
    reader_free(r);
    return NULL;
  }
  if (!decode) return r;
  const AVCodec *codec = avcodec_find_decoder(par->codec_id);
  if (codec == NULL) {
    rfail(r, VL_EFORMAT, "no decoder for this codec in FFmpeg");
    reader_free(r);
    return NULL;
  }
  r->dec = avcodec_alloc_context3(codec);
  r->pkt = av_packet_alloc();
  r->frame = av_frame_alloc();
  if (r->dec == NULL || r->pkt == NULL || r->frame == NULL) {
    vl_error(VL_ENOMEM, "%s: %s: out of memory", op, path);
    reader_free(r);
    return NULL;
  }
  if ((ret = avcodec_parameters_to_context(r->dec, par)) < 0) {
    rfail(r, VL_EFORMAT, "bad codec parameters: %s", AVTEXT(ret));
    reader_free(r);
    return NULL;
  }
  r->dec->thread_count = vl_get_num_threads();
  r->dec->max_pixels = vl__media_max_pixels();
  r->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
  r->dec->pkt_timebase = r->st->time_base;
  if ((ret = avcodec_open2(r->dec, codec, NULL)) < 0) {
    rfail(r, VL_EFORMAT, "cannot open the decoder: %s", AVTEXT(ret));
    reader_free(r);
    return NULL;
  }
  return r;
}

/* Output size, layout and the scratch frame. */
static int reader_setup(reader *r, const vl_video_read_opts *o) {
  r->out_h = o->height > 0 ? o->height : r->info.height;
  r->out_w = o->width > 0 ? o->width : r->info.width;
  if (o->height < 0 || o->width < 0 || r->out_h > MEDIA_MAX_SIDE || r->out_w > MEDIA_MAX_SIDE)
    return rfail(r, VL_EARG, "size {%lld, %lld}, expected 1..%d on each side", (long long)o->height,
                 (long long)o->width, MEDIA_MAX_SIDE);
  r->resize = o->resize;
  r->yuv = o->yuv;
  r->chw = o->chw || o->yuv;
  r->frame_bytes = (size_t)r->out_h * (size_t)r->out_w * 3;
  r->out = av_frame_alloc();
  int ret = -1;
  if (r->out) {
    r->out->format = r->yuv ? AV_PIX_FMT_YUV444P : AV_PIX_FMT_RGB24;
    r->out->width = (int)r->out_w;
    r->out->height = (int)r->out_h;
    ret = av_frame_get_buffer(r->out, 64);
  }
  for (int p = 0; ret >= 0 && p < 4; p++) {
    r->scratch[p] = r->out->data[p];
    r->scratch_ls[p] = r->out->linesize[p];
  }
  if (ret < 0) return vl_error(VL_ENOMEM, "%s: %s: out of memory for a %lldx%lld frame", r->op, r->path,
                               (long long)r->out_w, (long long)r->out_h);
  return VL_OK;
}

/* Index of a frame from its time stamp. */
static int64_t index_of_pts(reader *r, int64_t pts) {
  AVRational per_frame = av_inv_q(r->fps_q);
  /* round((pts - start) * tb / (1 / fps)) */
  return av_rescale_q_rnd(pts - r->st_start, r->st->time_base, per_frame, AV_ROUND_NEAR_INF);
}

/* 1: a frame in r->frame; 0: end of stream. */
static int reader_decode(reader *r, int64_t *index) {
  for (;;) {
    int ret = avcodec_receive_frame(r->dec, r->frame);
    if (ret == 0) {
      /* without presentation times from the container (AVI), the first
         frame after a seek is the keyframe sought to: its packet's time */
      int64_t pts = r->frame->pts != AV_NOPTS_VALUE || r->seek_pkt_ts == AV_NOPTS_VALUE
                        ? r->frame->best_effort_timestamp
                        : r->seek_pkt_ts;
      if (r->need_index && pts != AV_NOPTS_VALUE) r->next_index = index_of_pts(r, pts);
      r->need_index = false;
      *index = r->next_index++;
      return 1;
    }
    if (ret == AVERROR_EOF) {
      r->done = true;
      return 0;
    }
    if (ret != AVERROR(EAGAIN)) return rfail(r, VL_EFORMAT, "decoding failed: %s", AVTEXT(ret)), -1;
    if (r->eof_sent) {
      r->done = true;
      return 0;
    }
    ret = av_read_frame(r->fmt, r->pkt);
    if (ret == AVERROR_EOF || (ret < 0 && r->fmt->pb && avio_feof(r->fmt->pb) && ret != AVERROR_INVALIDDATA)) {
      r->eof_sent = true;
      ret = avcodec_send_packet(r->dec, NULL);
      if (ret < 0 && ret != AVERROR_EOF)
        return rfail(r, VL_EFORMAT, "decoding failed at the end: %s", AVTEXT(ret)), -1;
      continue;
    }
    if (ret < 0) return rfail(r, VL_EFORMAT, "reading a packet failed: %s", AVTEXT(ret)), -1;
    if (r->pkt->stream_index != r->si) {
      av_packet_unref(r->pkt);
      continue;
    }
    if (r->need_index && r->seek_pkt_ts == AV_NOPTS_VALUE)
      r->seek_pkt_ts = r->pkt->pts != AV_NOPTS_VALUE ? r->pkt->pts : r->pkt->dts;
    ret = avcodec_send_packet(r->dec, r->pkt);
    av_packet_unref(r->pkt);
    if (ret < 0 && ret != AVERROR(EAGAIN))
      return rfail(r, VL_EFORMAT, "decoding failed: %s", AVTEXT(ret)), -1;
  }
}

/* Convert r->frame into dst (frame_bytes, layout of the output). */
static int reader_convert(reader *r, uint8_t *dst) {
  AVFrame *f = r->frame;
  int full = f->color_range == AVCOL_RANGE_JPEG;
  enum AVPixelFormat src_fmt = vl__media_dejpeg((enum AVPixelFormat)f->format, &full);
  enum AVPixelFormat dst_fmt = r->yuv ? AV_PIX_FMT_YUV444P : AV_PIX_FMT_RGB24;
  int64_t H = r->out_h, W = r->out_w;
  bool same = f->width == W && f->height == H;
  if (r->yuv && same && src_fmt == AV_PIX_FMT_YUV444P) {
    for (int p = 0; p < 3; p++)
      for (int64_t y = 0; y < H; y++) memcpy(dst + (p * H + y) * W, f->data[p] + y * f->linesize[p], (size_t)W);
    return VL_OK;
  }
  int flags = same ? SWS_BICUBIC : sws_flags_of(r->resize);
  /* one context per source format/size/range/colour space (set once:
     sws_getCachedContext would keep a context whose details we changed) */
  int key[6] = {src_fmt, full, f->colorspace, f->width, f->height, 1};
  if (r->sws == NULL || memcmp(key, r->sws_key, sizeof key) != 0) {
    sws_freeContext(r->sws);
    /* sliced over vl's threads (as the ffmpeg command line's scale filter) */
    r->sws = sws_alloc_context();
    if (r->sws) {
      av_opt_set_int(r->sws, "srcw", f->width, 0);
      av_opt_set_int(r->sws, "srch", f->height, 0);
      av_opt_set_int(r->sws, "src_format", src_fmt, 0);
      av_opt_set_int(r->sws, "dstw", W, 0);
      av_opt_set_int(r->sws, "dsth", H, 0);
      av_opt_set_int(r->sws, "dst_format", dst_fmt, 0);
      av_opt_set_int(r->sws, "sws_flags", flags, 0);
      av_opt_set_int(r->sws, "threads", vl_get_num_threads(), 0);
      if (sws_init_context(r->sws, NULL, NULL) < 0) {
        sws_freeContext(r->sws);
        r->sws = NULL;
      }
    }
    if (r->sws == NULL)
      return rfail(r, VL_EFORMAT, "cannot convert %s %dx%d frames to %s %lldx%lld",
                   av_get_pix_fmt_name(src_fmt) ? av_get_pix_fmt_name(src_fmt) : "?", f->width, f->height,
                   av_get_pix_fmt_name(dst_fmt), (long long)W, (long long)H);
    int dst_full = r->yuv ? full : 1;
    sws_setColorspaceDetails(r->sws, vl__media_sws_coeffs(f->colorspace), full, sws_getCoefficients(SWS_CS_DEFAULT), dst_full,
                             0, 1 << 16, 1 << 16);
    memcpy(r->sws_key, key, sizeof key);
  }
  f->format = src_fmt; /* yuvj* as yuv* (the range went to the context) */
  int ret = sws_scale_frame(r->sws, r->out, f);
  if (ret < 0) return rfail(r, VL_EFORMAT, "converting a frame failed: %s", AVTEXT(ret));
  if (r->yuv) {
    for (int p = 0; p < 3; p++)
      for (int64_t y = 0; y < H; y++)
        memcpy(dst + (p * H + y) * W, r->scratch[p] + y * r->scratch_ls[p], (size_t)W);
  } else if (!r->chw) {
    for (int64_t y = 0; y < H; y++) memcpy(dst + y * W * 3, r->scratch[0] + y * r->scratch_ls[0], (size_t)W * 3);
  } else {
    for (int64_t y = 0; y < H; y++) {
      const uint8_t *s = r->scratch[0] + y * r->scratch_ls[0];
      uint8_t *d0 = dst + y * W, *d1 = d0 + H * W, *d2 = d1 + H * W;
      for (int64_t x = 0; x < W; x++) {
        d0[x] = s[3 * x];
        d1[x] = s[3 * x + 1];
        d2[x] = s[3 * x + 2];
      }
    }
  }
  return VL_OK;
}

static int reader_seek_ts(reader *r, int64_t frame) {
  int64_t ts = r->st_start + av_rescale_q(frame, av_inv_q(r->fps_q), r->st->time_base);
  int ret = av_seek_frame(r->fmt, r->si, ts, AVSEEK_FLAG_BACKWARD);
  if (ret < 0 && frame > 0) return ret;
  if (ret < 0) ret = avformat_seek_file(r->fmt, r->si, INT64_MIN, ts, ts, 0);
  if (ret < 0) return ret;
  avcodec_flush_buffers(r->dec);
  r->eof_sent = r->done = false;
  r->need_index = frame > 0;
  r->seek_pkt_ts = AV_NOPTS_VALUE;
  if (frame <= 0) r->next_index = 0;
  return 0;
}

/* Position the reader so that the next frame returned by reader_next is
   the first with index >= target. Seeks only when it saves decoding. */
static int reader_skip_to(reader *r, int64_t target, int64_t min_gap, int64_t *pending_index, bool *have_pending) {
  *have_pending = false;
  if (target <= r->next_index && !r->need_index) return VL_OK;
  bool seek = target - r->next_index > min_gap || r->need_index;
  int64_t back = 0;
  for (int attempt = 0; seek && attempt <= MEDIA_SEEK_TRIES; attempt++) {
    int64_t to = target - back;
    if (to < 0) to = 0;
    int ret = reader_seek_ts(r, to);
    if (ret < 0) {
      if (attempt == 0 && r->next_index == 0 && !r->need_index) break; /* not seekable: decode forward */
      return rfail(r, VL_EFORMAT, "seeking to frame %lld failed: %s", (long long)to, AVTEXT(ret));
    }
    int64_t idx;
    int got = reader_decode(r, &idx);
    if (got < 0) return VL_EFORMAT;
    if (got == 0) return VL_OK; /* past the end */
    if (idx <= target || to == 0) {
      *pending_index = idx;
      *have_pending = true;
      break;
    }
    back = back ? back * 4 : (int64_t)ceil(r->info.fps) + 1; /* landed after the target: back off */
    if (attempt == MEDIA_SEEK_TRIES - 1) back = target;      /* last try: from the start */
  }
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Frame sequence (shared by read and clips)                            */
/* ------------------------------------------------------------------ */

/* Frames with index start, start+step, ... (at most `limit` when >= 0). */
typedef struct seq {
  reader *r;
  int64_t next_want;     /* index of the next frame to keep */
  int64_t step;
  int64_t end;           /* exclusive bound on indices (INT64_MAX: none) */
  int64_t pend_index;
  bool pend;             /* r->frame holds a decoded frame not yet consumed */
  bool started;
} seq;

/* 1: frame index *idx converted into dst; 0: no more. */
static int seq_next(seq *s, uint8_t *dst, int64_t *idx) {
  reader *r = s->r;
  if (s->next_want >= s->end) return 0;
  if (!s->started) {
    s->started = true;
    if (reader_skip_to(r, s->next_want, 1, &s->pend_index, &s->pend) != VL_OK) return -1;
  }
  for (;;) {
    int64_t i;
    if (s->pend) {
      s->pend = false;
      i = s->pend_index;
    } else {
      if (r->done) return 0;
      int got = reader_decode(r, &i);
      if (got <= 0) return got;
    }
    if (i < s->next_want) continue;
    if (i >= s->end) return 0;
    /* a frame index past the one wanted (a gap in time stamps): take it */
    if (reader_convert(r, dst) != VL_OK) return -1;
    *idx = i;
    int64_t k = (i - s->next_want) / s->step + 1;
    s->next_want += k * s->step;
    return 1;
  }
}

/* First frame index of the options. */
static int64_t start_index(const vl_video_read_opts *o, const vl_video_info *in) {
  if (o->start_time >= 0) return (int64_t)ceil((o->start_time) * in->fps - 1e-6);
  return o->start;
}

static int check_read_opts(const char *op, const char *path, const vl_video_read_opts *o) {
  if (o->step < 1) return io_fail(VL_EARG, op, path, "step %lld, expected >= 1", (long long)o->step);
  if (o->start < 0) return io_fail(VL_EARG, op, path, "start frame %lld, expected >= 1", (long long)o->start + 1);
  if (!(o->start_time >= 0) && o->start_time != -1)
    return io_fail(VL_EARG, op, path, "start_time %g, expected >= 0 seconds", o->start_time);
  if ((o->height == 0) != (o->width == 0) || o->height < 0 || o->width < 0)
    return io_fail(VL_EARG, op, path, "size {%lld, %lld}, expected two positive sizes {h, w}",
                   (long long)o->height, (long long)o->width);
  if (o->yuv && (o->height || o->width))
    return io_fail(VL_EARG, op, path, "yuv444p planes are read at the video's own size (no size option)");
  return VL_OK;
}

void vl_video_read_opts_init(vl_video_read_opts *o) {
  memset(o, 0, sizeof *o);
  o->start_time = -1;
  o->frames = -1;
  o->step = 1;
}

void vl_video_write_opts_init(vl_video_write_opts *o) {
  memset(o, 0, sizeof *o);
  o->fps = 25;
  o->crf = -1;
}

int vl_video_probe(const char *path, vl_video_info *info) {
  reader *r = reader_open("video.info", path, false);
  if (r == NULL) return vl_last_status();
  *info = r->info;
  reader_free(r);
  return VL_OK;
}

static void out_shape(const reader *r, int64_t t, int64_t *shape) {
  shape[0] = t;
  if (r->chw) {
    shape[1] = 3, shape[2] = r->out_h, shape[3] = r->out_w;
  } else {
    shape[1] = r->out_h, shape[2] = r->out_w, shape[3] = 3;
  }
}

/* A copy of the first t frames of buf (a new tensor of exactly t frames). */
static vl_tensor *shrink(const reader *r, vl_tensor *buf, int64_t t) {
  int64_t shape[4];
  out_shape(r, t, shape);
  vl_tensor *out = vl_empty(4, shape, VL_UINT8);
  if (out && t > 0) memcpy(vl_data_ptr(out), vl_data_ptr(buf), (size_t)t * r->frame_bytes);
  vl_tensor_release(buf);
  return out;
}

vl_tensor *vl_video_read(const char *path, const vl_video_read_opts *o, vl_video_info *info, int64_t *first) {
  const char *op = "video.read";
  vl_video_read_opts def;
  if (o == NULL) vl_video_read_opts_init(&def), o = &def;
  if (check_read_opts(op, path, o) != VL_OK) return NULL;
  reader *r = reader_open(op, path, true);
  if (r == NULL) return NULL;
  if (reader_setup(r, o) != VL_OK) {
    reader_free(r);
    return NULL;
  }
  if (info) *info = r->info;
  int64_t s0 = start_index(o, &r->info);
  seq s = {.r = r, .next_want = s0, .step = o->step, .end = INT64_MAX};
  /* capacity: the frames asked for, bounded by the (estimated) count;
     grown by half when the file holds more. The container's count is
     trusted as far as the file could hold that many frames (a byte
     each); an estimate only up to a first chunk of memory. */
  int64_t want = o->frames;
  int64_t est = r->info.frames > s0 ? (r->info.frames - s0 + o->step - 1) / o->step : 1;
  int64_t cap = want >= 0 ? VL_MIN(want, est) : est;
  int64_t chunk = MEDIA_FIRST_CHUNK / (int64_t)r->frame_bytes;
  int64_t fsize = r->fmt->pb ? avio_size(r->fmt->pb) : -1;
  bool trusted = r->info.frames_exact && fsize > 0 && r->info.frames <= fsize;
  if (!trusted && cap > chunk) cap = chunk > 0 ? chunk : 1;
  if (cap < 1) cap = 1;
  if (want == 0) cap = 0;
  int64_t shape[4];
  out_shape(r, cap, shape);
  vl_tensor *buf = vl_empty(4, shape, VL_UINT8);
  if (buf == NULL) {
    reader_free(r);
    return NULL;
  }
  int64_t t = 0, idx0 = s0;
  while (want < 0 || t < want) {
    if (t == cap) {
      int64_t ncap = cap + cap / 2 + 1;
      if (want >= 0 && ncap > want) ncap = want;
      out_shape(r, ncap, shape);
      vl_tensor *nb = vl_empty(4, shape, VL_UINT8);
      if (nb == NULL) {
        vl_tensor_release(buf);
        reader_free(r);
        return NULL;
      }
      if (t > 0) memcpy(vl_data_ptr(nb), vl_data_ptr(buf), (size_t)t * r->frame_bytes);
      vl_tensor_release(buf);
      buf = nb;
      cap = ncap;
    }
    int64_t idx;
    int got = seq_next(&s, (uint8_t *)vl_data_ptr(buf) + (size_t)t * r->frame_bytes, &idx);
    if (got < 0) {
      vl_tensor_release(buf);
      reader_free(r);
      return NULL;
    }
    if (got == 0) break;
    if (t == 0) idx0 = idx;
    t++;
  }
  if (t != cap) buf = shrink(r, buf, t);
  reader_free(r);
  if (first) *first = idx0;
  return buf;
}

/* ------------------------------------------------------------------ */
/* Clips                                                                */
/* ------------------------------------------------------------------ */

struct vl_video_clips {
  reader *r;
  int64_t clip, stride, step;
  int64_t next_start;   /* first frame of the next clip */
  int64_t end;          /* exclusive bound on frames covered */
  vl_tensor *held_t;
  uint8_t *held;        /* ring of decoded frames: index held_first .. held_first+held_n-1 */
  int64_t held_first, held_n, held_cap;
  bool eof;
};

const vl_video_info *vl_video_clips_info(const vl_video_clips *c) { return &c->r->info; }

vl_video_clips *vl_video_clips_open(const char *path, const vl_video_read_opts *o, int64_t clip, int64_t stride) {
  const char *op = "video.frames";
  vl_video_read_opts def;
  if (o == NULL) vl_video_read_opts_init(&def), o = &def;
  if (check_read_opts(op, path, o) != VL_OK) return NULL;
  if (clip < 1 || stride < 1) {
    io_fail(VL_EARG, op, path, "clip %lld and stride %lld, expected both >= 1", (long long)clip, (long long)stride);
    return NULL;
  }
  int64_t span;
  if (__builtin_mul_overflow(clip - 1, o->step, &span) || span > (1ll << 40)) {
    io_fail(VL_EARG, op, path, "clip %lld with step %lld spans too many frames", (long long)clip, (long long)o->step);
    return NULL;
  }
  reader *r = reader_open(op, path, true);
  if (r == NULL) return NULL;
  vl_video_clips *c = calloc(1, sizeof *c);
  if (c == NULL) {
    reader_free(r);
    vl_error(VL_ENOMEM, "%s: out of memory", op);
    return NULL;
  }
  c->r = r;
  if (reader_setup(r, o) != VL_OK) {
    vl_video_clips_close(c);
    return NULL;
  }
  c->clip = clip;
  c->stride = stride;
  c->step = o->step;
  c->next_start = start_index(o, &r->info);
  c->end = o->frames >= 0 ? c->next_start + o->frames : INT64_MAX;
  /* frames held: one clip's span, allocated as a tensor (so the memory
     limit applies) */
  int64_t held_shape[2] = {span + 1, (int64_t)r->frame_bytes};
  c->held_t = vl_empty(2, held_shape, VL_UINT8);
  if (c->held_t == NULL) {
    vl_video_clips_close(c);
    return NULL;
  }
  c->held_cap = span + 1;
  c->held = vl_data_ptr(c->held_t);
  c->held_first = c->next_start;
  return c;
}

void vl_video_clips_close(vl_video_clips *c) {
  if (c == NULL) return;
  reader_free(c->r);
  vl_tensor_release(c->held_t);
  free(c);
}

static uint8_t *held_at(vl_video_clips *c, int64_t index) {
  return c->held + (size_t)(index % c->held_cap) * c->r->frame_bytes;
}

int vl_video_clips_next(vl_video_clips *c, vl_tensor **out, int64_t *first) {
  *out = NULL;
  reader *r = c->r;
  int64_t s0 = c->next_start;
  int64_t last = s0 + (c->clip - 1) * c->step;
  if (c->eof || last >= c->end) return VL_OK;
  /* drop frames before this clip */
  if (c->held_n > 0 && s0 > c->held_first) {
    int64_t drop = VL_MIN(s0 - c->held_first, c->held_n);
    c->held_first += drop;
    c->held_n -= drop;
  }
  if (c->held_n == 0) {
    c->held_first = s0;
    /* jump ahead (seek when it saves decoding) */
    int64_t pend_idx = 0;
    bool pend = false;
    int64_t gap = r->next_index == 0 && !r->done ? 1 : MEDIA_SEEK_GAP;
    if (reader_skip_to(r, s0, gap, &pend_idx, &pend) != VL_OK) return vl_last_status();
    for (;;) {
      int64_t i;
      if (pend) {
        pend = false;
        i = pend_idx;
      } else {
        int got = r->done ? 0 : reader_decode(r, &i);
        if (got < 0) return vl_last_status();
        if (got == 0) {
          c->eof = true;
          return VL_OK;
        }
      }
      if (i < s0) continue;
      if (i > s0) {
        c->held_first = s0 = i; /* a gap: the clip starts at the next frame there is */
        last = s0 + (c->clip - 1) * c->step;
        if (last >= c->end) {
          c->eof = true;
          return VL_OK;
        }
      }
      if (reader_convert(r, held_at(c, i)) != VL_OK) return vl_last_status();
      c->held_n = 1;
      break;
    }
  }
  /* decode until the clip's last frame is held */
  while (c->held_first + c->held_n <= last) {
    int64_t i;
    int got = r->done ? 0 : reader_decode(r, &i);
    if (got < 0) return vl_last_status();
    if (got == 0) {
      c->eof = true;
      return VL_OK;
    }
    int64_t want = c->held_first + c->held_n;
    if (i < want) continue;
    while (want < i && want <= last) { /* missing indices: repeat the frame before */
      memcpy(held_at(c, want), held_at(c, want - 1), r->frame_bytes);
      c->held_n++;
      want++;
    }
    if (reader_convert(r, held_at(c, i)) != VL_OK) return vl_last_status();
    c->held_n++;
  }
  int64_t shape[4];
  out_shape(r, c->clip, shape);
  vl_tensor *t = vl_empty(4, shape, VL_UINT8);
  if (t == NULL) return vl_last_status();
  for (int64_t j = 0; j < c->clip; j++)
    memcpy((uint8_t *)vl_data_ptr(t) + (size_t)j * r->frame_bytes, held_at(c, s0 + j * c->step), r->frame_bytes);
  *out = t;
  *first = s0;
  c->next_start = s0 + c->stride;
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Writer                                                               */
/* ------------------------------------------------------------------ */

typedef struct wio {
  int fd;
  int err; /* errno of the first failed write */
} wio;

static int wio_write(void *opaque, uint8_t *buf, int n) {
  wio *w = opaque;
  int done = 0;
  while (done < n) {
    ssize_t k = write(w->fd, buf + done, (size_t)(n - done));
    if (k < 0) {
      if (errno == EINTR) continue;
      if (!w->err) w->err = errno;
      return AVERROR(errno);
    }
    done += (int)k;
  }
  return n;
}

static int64_t wio_seek(void *opaque, int64_t off, int whence) {
  wio *w = opaque;
  if (whence & AVSEEK_SIZE) {
    struct stat sb;
    if (fstat(w->fd, &sb) != 0) return AVERROR(errno);
    return sb.st_size;
  }
  whence &= ~AVSEEK_FORCE;
  off_t r = lseek(w->fd, (off_t)off, whence);
  return r < 0 ? AVERROR(errno) : (int64_t)r;
}

static void atomic_cancel(io_atomic *a) {
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  if (a->tmp) {
    unlink(a->tmp);
    free(a->tmp);
    a->tmp = NULL;
  }
}

typedef struct writer {
  const char *op, *path;
  const char *codec; /* encoder name, for messages */
  io_atomic at;
  bool at_open;
  wio w;
  AVIOContext *pb;
  AVFormatContext *oc;
  AVCodecContext *enc;
  AVStream *st;
  AVFrame *frame;
  AVPacket *pkt;
  struct SwsContext *sws;
} writer;

static void writer_free(writer *w) {
  avcodec_free_context(&w->enc);
  if (w->oc) avformat_free_context(w->oc);
  w->oc = NULL;
  if (w->pb) {
    av_freep(&w->pb->buffer);
    avio_context_free(&w->pb);
  }
  av_frame_free(&w->frame);
  av_packet_free(&w->pkt);
  sws_freeContext(w->sws);
  w->sws = NULL;
  if (w->at_open) atomic_cancel(&w->at);
  w->at_open = false;
}

static int wfail(writer *w, vl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int wfail(writer *w, vl_status code, const char *fmt, ...) {
  char msg[IO_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *cn = w->codec;
  if (cn) vl_error(code, "%s: %s: codec %s: %s; the file was left as it was", w->op, w->path, cn, msg);
  else vl_error(code, "%s: %s: %s; the file was left as it was", w->op, w->path, msg);
  writer_free(w);
  return code;
}

static int drain(writer *w) {
  for (;;) {
    int ret = avcodec_receive_packet(w->enc, w->pkt);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return VL_OK;
    if (ret < 0) return wfail(w, VL_EFORMAT, "encoding failed: %s", AVTEXT(ret));
    av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
    w->pkt->stream_index = w->st->index;
    ret = av_interleaved_write_frame(w->oc, w->pkt);
    if (ret < 0) {
      if (w->w.err) return wfail(w, VL_EIO, "write failed (%s)", strerror(w->w.err));
      return wfail(w, VL_EIO, "writing a packet failed: %s", AVTEXT(ret));
    }
  }
}


int vl_video_write(const char *path, const vl_tensor *frames, const vl_video_write_opts *o) {
  const char *op = "video.write";
  vl__media_init();
  vl_video_write_opts def;
  if (o == NULL) vl_video_write_opts_init(&def), o = &def;
  const char *ext = vl__media_ext_of(path);
  bool y4m = ext_is(ext, "y4m");
  const char *muxer = NULL;
  if (y4m) muxer = "yuv4mpegpipe";
  else if (ext_is(ext, "mp4") || ext_is(ext, "m4v")) muxer = "mp4";
  else if (ext_is(ext, "mov")) muxer = "mov";
  else if (ext_is(ext, "mkv")) muxer = "matroska";
  else if (ext_is(ext, "avi")) muxer = "avi";
  else
    return io_fail(VL_EARG, op, path, "unknown extension '.%s' (expected .mp4, .m4v, .mov, .mkv, .avi or .y4m)",
                   ext);
  bool chw = o->chw || o->yuv;
  if (frames->ndim != 4 || frames->shape[chw ? 1 : 3] != 3) {
    char b[VL_SHAPE_STR];
    return io_fail(VL_ESHAPE, op, path, "frames have shape %s, expected %s",
                   vl_shape_str(frames->ndim, frames->shape, b), chw ? "[T,3,H,W]" : "[T,H,W,3]");
  }
  int64_t T = frames->shape[0], H = frames->shape[chw ? 2 : 1], W = frames->shape[chw ? 3 : 2];
  if (T < 1 || H < 1 || W < 1 || H > MEDIA_MAX_SIDE || W > MEDIA_MAX_SIDE)
    return io_fail(VL_ESHAPE, op, path, "%lld frames of %lldx%lld, expected at least 1 frame of 1..%d on each side",
                   (long long)T, (long long)W, (long long)H, MEDIA_MAX_SIDE);
  if (!(o->fps > 0) || o->fps > 1e6) return io_fail(VL_EARG, op, path, "fps %g, expected > 0", o->fps);
  if (o->yuv && !y4m) return io_fail(VL_EARG, op, path, "yuv444p planes can only be written to .y4m");
  const char *cname = o->codec;
  if (cname == NULL) cname = y4m ? "rawvideo" : avcodec_find_encoder_by_name("libx264") ? "h264" : "mpeg4";
  if (y4m != (strcmp(cname, "rawvideo") == 0))
    return io_fail(VL_EARG, op, path, "codec '%s' with '.%s' (rawvideo goes to .y4m, h264 and mpeg4 to the others)",
                   cname, ext);
  const AVCodec *codec = NULL;
  enum AVPixelFormat pix = AV_PIX_FMT_YUV420P;
  if (strcmp(cname, "h264") == 0) {
    codec = avcodec_find_encoder_by_name("libx264");
    if (codec == NULL) return io_fail(VL_EARG, op, path, "codec h264: FFmpeg has no libx264 encoder here");
  } else if (strcmp(cname, "mpeg4") == 0) {
    codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
  } else if (strcmp(cname, "rawvideo") == 0) {
    /* the yuv4mpegpipe muxer takes frames wrapped in packets */
    codec = avcodec_find_encoder(AV_CODEC_ID_WRAPPED_AVFRAME);
    pix = AV_PIX_FMT_YUV444P;
  } else {
    return io_fail(VL_EARG, op, path, "unknown codec '%s' (expected h264, mpeg4 or rawvideo)", cname);
  }
  if (codec == NULL) return io_fail(VL_EARG, op, path, "codec %s: no encoder in FFmpeg", cname);
  if (pix == AV_PIX_FMT_YUV420P && (H % 2 || W % 2))
    return io_fail(VL_ESHAPE, op, path, "codec %s writes yuv420p, which needs an even width and height, got %lldx%lld",
                   cname, (long long)W, (long long)H);
  if (o->crf >= 0 && o->crf > 51) return io_fail(VL_EARG, op, path, "crf %g, expected 0..51", o->crf);
  if (o->qscale < 0 || o->qscale > 31) return io_fail(VL_EARG, op, path, "qscale %d, expected 1..31", o->qscale);
  if (o->gop < 0) return io_fail(VL_EARG, op, path, "gop %d, expected >= 1", o->gop);
  if (o->bit_rate < 0) return io_fail(VL_EARG, op, path, "bitrate %lld, expected > 0", (long long)o->bit_rate);
  if (o->preset) { /* x264 prints a bad preset on stderr itself: refuse it here */
    static const char *const presets[] = {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                                          "slow", "slower", "veryslow", "placebo", NULL};
    bool ok = false;
    for (int i = 0; presets[i]; i++) ok = ok || strcmp(o->preset, presets[i]) == 0;
    if (!ok || strcmp(cname, "h264") != 0)
      return io_fail(VL_EARG, op, path, "preset '%s' (expected one of x264's: ultrafast, superfast, veryfast, faster, "
                     "fast, medium, slow, slower, veryslow, placebo; only with codec h264)", o->preset);
  }

  vl_tensor *bytes = vl__media_as_bytes(op, path, frames);
  if (bytes == NULL) return vl_last_status();

  writer wr = {.op = op, .path = path, .codec = codec->name};
  writer *w = &wr;
  if (vl__atomic_begin(&w->at, op, path) != VL_OK) {
    vl_tensor_release(bytes);
    return vl_last_status();
  }
  w->at_open = true;
  w->w.fd = w->at.fd;
  int ret;
  uint8_t *iobuf = av_malloc(MEDIA_AVIO_BUF);
  if (iobuf) w->pb = avio_alloc_context(iobuf, MEDIA_AVIO_BUF, 1, &w->w, NULL, wio_write, wio_seek);
  if (w->pb == NULL) {
    av_free(iobuf);
    vl_tensor_release(bytes);
    return wfail(w, VL_ENOMEM, "out of memory");
  }
  ret = avformat_alloc_output_context2(&w->oc, NULL, muxer, path);
  if (ret < 0 || w->oc == NULL) {
    vl_tensor_release(bytes);
    return wfail(w, VL_EFORMAT, "cannot set up the %s muxer: %s", muxer, AVTEXT(ret));
  }
  w->oc->pb = w->pb;
  w->oc->flags |= AVFMT_FLAG_CUSTOM_IO;
  w->st = avformat_new_stream(w->oc, NULL);
  w->enc = avcodec_alloc_context3(codec);
  w->frame = av_frame_alloc();
  w->pkt = av_packet_alloc();
  if (w->st == NULL || w->enc == NULL || w->frame == NULL || w->pkt == NULL) {
    vl_tensor_release(bytes);
    return wfail(w, VL_ENOMEM, "out of memory");
  }
  AVRational fps = av_d2q(o->fps, 1000000);
  AVCodecContext *e = w->enc;
  e->width = (int)W;
  e->height = (int)H;
  e->pix_fmt = pix;
  e->time_base = av_inv_q(fps);
  e->framerate = fps;
  e->sample_aspect_ratio = (AVRational){1, 1};
  e->colorspace = AVCOL_SPC_SMPTE170M;
  e->color_range = y4m ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
  e->thread_count = vl_get_num_threads();
  if (o->gop > 0) e->gop_size = o->gop;
  if (w->oc->oformat->flags & AVFMT_GLOBALHEADER) e->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (strcmp(cname, "h264") == 0) {
    av_opt_set(e->priv_data, "preset", o->preset ? o->preset : "medium", 0);
    if (o->bit_rate > 0) e->bit_rate = o->bit_rate;
    else av_opt_set_double(e->priv_data, "crf", o->crf >= 0 ? o->crf : 18, 0);
    if (o->gop > 0) av_opt_set(e->priv_data, "x264-params", "scenecut=0", 0);
  } else if (strcmp(cname, "mpeg4") == 0) {
    if (o->bit_rate > 0) {
      e->bit_rate = o->bit_rate;
    } else {
      e->flags |= AV_CODEC_FLAG_QSCALE;
      e->global_quality = FF_QP2LAMBDA * (o->qscale > 0 ? o->qscale : 3);
    }
  }
  if ((ret = avcodec_open2(e, codec, NULL)) < 0) {
    vl_tensor_release(bytes);
    return wfail(w, VL_EFORMAT, "cannot open the encoder: %s", AVTEXT(ret));
  }
  if ((ret = avcodec_parameters_from_context(w->st->codecpar, e)) < 0) {
    vl_tensor_release(bytes);
    return wfail(w, VL_EFORMAT, "bad encoder parameters: %s", AVTEXT(ret));
  }
  w->st->time_base = e->time_base;
  w->st->avg_frame_rate = fps;
  w->st->r_frame_rate = fps;
  if ((ret = avformat_write_header(w->oc, NULL)) < 0) {
    vl_tensor_release(bytes);
    return wfail(w, VL_EIO, "cannot write the header: %s", AVTEXT(ret));
  }
  w->frame->format = pix;
  w->frame->width = (int)W;
  w->frame->height = (int)H;
  w->frame->color_range = e->color_range;
  w->frame->colorspace = e->colorspace;
  if ((ret = av_frame_get_buffer(w->frame, 0)) < 0) {
    vl_tensor_release(bytes);
    return wfail(w, VL_ENOMEM, "out of memory for a frame");
  }
  if (!o->yuv) {
    w->sws = sws_getContext((int)W, (int)H, chw ? AV_PIX_FMT_GBRP : AV_PIX_FMT_RGB24, (int)W, (int)H, pix,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, NULL, NULL, NULL);
    if (w->sws == NULL) {
      vl_tensor_release(bytes);
      return wfail(w, VL_EFORMAT, "cannot convert RGB to %s", av_get_pix_fmt_name(pix));
    }
    sws_setColorspaceDetails(w->sws, sws_getCoefficients(SWS_CS_DEFAULT), 1, sws_getCoefficients(SWS_CS_SMPTE170M),
                             e->color_range == AVCOL_RANGE_JPEG, 0, 1 << 16, 1 << 16);
  }
  size_t fb = (size_t)H * (size_t)W * 3;
  const uint8_t *base = vl_data_ptr(bytes);
  for (int64_t t = 0; t < T; t++) {
    if ((ret = av_frame_make_writable(w->frame)) < 0) {
      vl_tensor_release(bytes);
      return wfail(w, VL_ENOMEM, "out of memory for a frame");
    }
    const uint8_t *src = base + (size_t)t * fb;
    if (o->yuv) {
      for (int p = 0; p < 3; p++)
        for (int64_t y = 0; y < H; y++)
          memcpy(w->frame->data[p] + y * w->frame->linesize[p], src + ((size_t)p * H + y) * W, (size_t)W);
    } else if (chw) {
      const uint8_t *planes[4] = {src + H * W, src + 2 * H * W, src, NULL}; /* G, B, R */
      int ls[4] = {(int)W, (int)W, (int)W, 0};
      sws_scale(w->sws, planes, ls, 0, (int)H, w->frame->data, w->frame->linesize);
    } else {
      const uint8_t *planes[4] = {src, NULL, NULL, NULL};
      int ls[4] = {(int)(W * 3), 0, 0, 0};
      sws_scale(w->sws, planes, ls, 0, (int)H, w->frame->data, w->frame->linesize);
    }
    w->frame->pts = t;
    w->frame->quality = e->global_quality; /* what AV_CODEC_FLAG_QSCALE encoders read */
    if ((ret = avcodec_send_frame(e, w->frame)) < 0) {
      vl_tensor_release(bytes);
      return wfail(w, VL_EFORMAT, "encoding frame %lld failed: %s", (long long)t + 1, AVTEXT(ret));
    }
    if (drain(w) != VL_OK) {
      vl_tensor_release(bytes);
      return vl_last_status();
    }
  }
  vl_tensor_release(bytes);
  if ((ret = avcodec_send_frame(e, NULL)) < 0) return wfail(w, VL_EFORMAT, "flushing failed: %s", AVTEXT(ret));
  if (drain(w) != VL_OK) return vl_last_status();
  if ((ret = av_write_trailer(w->oc)) < 0) {
    if (w->w.err) return wfail(w, VL_EIO, "write failed (%s)", strerror(w->w.err));
    return wfail(w, VL_EIO, "writing the trailer failed: %s", AVTEXT(ret));
  }
  avio_flush(w->pb);
  if (w->w.err || w->pb->error) {
    int err = w->w.err ? w->w.err : EIO;
    return wfail(w, VL_EIO, "write failed (%s)", strerror(err));
  }
  w->at_open = false;
  io_atomic at = w->at;
  writer_free(w);
  return vl__atomic_commit(&at);
}
