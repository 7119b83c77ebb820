/*
** audio.c — audio files and resampling (prefix vl_audio): reading and
** writing WAV, FLAC and Ogg Vorbis through libsndfile, and torchaudio's
** band-limited resampling. Spectral features (STFT, mel, MFCC) are in
** ops/stft.c.
**
** Reading: libsndfile decodes to float (or double) with its default
** normalisation: an n-bit PCM sample s becomes s / 2^(n-1), so 16-bit
** samples come back as exact multiples of 1/32768. Samples are read in
** chunks of interleaved frames and de-interleaved into a [channels,
** frames] tensor; a short read (a truncated or corrupt file) is an error
** naming the file and the frame.
**
** Writing: PCM subtypes are converted here, not by libsndfile (whose
** float-to-short conversion scales by 32767 and would not round-trip):
** x * 2^(n-1) rounded to nearest (ties to even), saturated to
** [-2^(n-1), 2^(n-1) - 1] — the behaviour libsndfile's SFC_SET_CLIPPING
** gives — then handed over as full-scale int32 (sf_writef_int), which
** libsndfile truncates back to n bits exactly. NaN and infinities are
** refused for PCM and Vorbis; FLOAT and DOUBLE store every value as it
** is (no clipping). The file is written through a temporary next to the
** target (ops/io.c's atomic-write plumbing: mkstemp, fsync, rename), so
** a failed write leaves the old file untouched.
**
** Resampling: torchaudio.functional.resample (sinc_interp_hann) composed
** from vl ops (conv1d with stride, transpose, reshape, narrow), so it
** records autograd like any composition; the kernel is computed in
** float64 and cast to the input's dtype.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sndfile.h>

#include "autograd.h"
#include "io_internal.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define AUDIO_CHUNK 65536 /* frames per libsndfile read/write call */

/* ------------------------------------------------------------------ */
/* Names                                                                */
/* ------------------------------------------------------------------ */

typedef struct audio_name {
  int code;
  const char *name;
} audio_name;

static const audio_name major_names[] = {
    {SF_FORMAT_WAV, "WAV"},     {SF_FORMAT_AIFF, "AIFF"},   {SF_FORMAT_AU, "AU"},     {SF_FORMAT_RAW, "RAW"},
    {SF_FORMAT_PAF, "PAF"},     {SF_FORMAT_SVX, "SVX"},     {SF_FORMAT_NIST, "NIST"}, {SF_FORMAT_VOC, "VOC"},
    {SF_FORMAT_IRCAM, "IRCAM"}, {SF_FORMAT_W64, "W64"},     {SF_FORMAT_MAT4, "MAT4"}, {SF_FORMAT_MAT5, "MAT5"},
    {SF_FORMAT_PVF, "PVF"},     {SF_FORMAT_XI, "XI"},       {SF_FORMAT_HTK, "HTK"},   {SF_FORMAT_SDS, "SDS"},
    {SF_FORMAT_AVR, "AVR"},     {SF_FORMAT_WAVEX, "WAVEX"}, {SF_FORMAT_SD2, "SD2"},   {SF_FORMAT_FLAC, "FLAC"},
    {SF_FORMAT_CAF, "CAF"},     {SF_FORMAT_WVE, "WVE"},     {SF_FORMAT_OGG, "OGG"},   {SF_FORMAT_MPC2K, "MPC2K"},
    {SF_FORMAT_RF64, "RF64"},
#ifdef SF_FORMAT_MPEG
    {SF_FORMAT_MPEG, "MPEG"},
#endif
    {0, NULL}};

static const audio_name sub_names[] = {
    {SF_FORMAT_PCM_S8, "PCM_S8"},       {SF_FORMAT_PCM_16, "PCM_16"},       {SF_FORMAT_PCM_24, "PCM_24"},
    {SF_FORMAT_PCM_32, "PCM_32"},       {SF_FORMAT_PCM_U8, "PCM_U8"},       {SF_FORMAT_FLOAT, "FLOAT"},
    {SF_FORMAT_DOUBLE, "DOUBLE"},       {SF_FORMAT_ULAW, "ULAW"},           {SF_FORMAT_ALAW, "ALAW"},
    {SF_FORMAT_IMA_ADPCM, "IMA_ADPCM"}, {SF_FORMAT_MS_ADPCM, "MS_ADPCM"},   {SF_FORMAT_GSM610, "GSM610"},
    {SF_FORMAT_VOX_ADPCM, "VOX_ADPCM"}, {SF_FORMAT_G721_32, "G721_32"},     {SF_FORMAT_G723_24, "G723_24"},
    {SF_FORMAT_G723_40, "G723_40"},     {SF_FORMAT_DWVW_12, "DWVW_12"},     {SF_FORMAT_DWVW_16, "DWVW_16"},
    {SF_FORMAT_DWVW_24, "DWVW_24"},     {SF_FORMAT_DWVW_N, "DWVW_N"},       {SF_FORMAT_DPCM_8, "DPCM_8"},
    {SF_FORMAT_DPCM_16, "DPCM_16"},     {SF_FORMAT_VORBIS, "VORBIS"},
#ifdef SF_FORMAT_OPUS
    {SF_FORMAT_OPUS, "OPUS"},
#endif
    {SF_FORMAT_ALAC_16, "ALAC_16"},     {SF_FORMAT_ALAC_20, "ALAC_20"},     {SF_FORMAT_ALAC_24, "ALAC_24"},
    {SF_FORMAT_ALAC_32, "ALAC_32"},
#ifdef SF_FORMAT_MPEG_LAYER_III
    {SF_FORMAT_MPEG_LAYER_I, "MPEG_LAYER_I"},   {SF_FORMAT_MPEG_LAYER_II, "MPEG_LAYER_II"},
    {SF_FORMAT_MPEG_LAYER_III, "MPEG_LAYER_III"},
#endif
    {0, NULL}};

static void name_of(const audio_name *t, int code, char *out, size_t n) {
  for (int i = 0; t[i].name; i++)
    if (t[i].code == code) {
      snprintf(out, n, "%s", t[i].name);
      return;
    }
  snprintf(out, n, "0x%04x", (unsigned)code);
}

static int code_of(const audio_name *t, const char *name) {
  for (int i = 0; t[i].name; i++)
    if (strcasecmp(t[i].name, name) == 0) return t[i].code;
  return 0;
}

static void fill_info(const SF_INFO *si, vl_audio_meta *info) {
  if (info == NULL) return;
  memset(info, 0, sizeof *info);
  name_of(major_names, si->format & SF_FORMAT_TYPEMASK, info->format, sizeof info->format);
  name_of(sub_names, si->format & SF_FORMAT_SUBMASK, info->subtype, sizeof info->subtype);
  info->channels = si->channels;
  info->rate = si->samplerate;
  info->frames = (int64_t)si->frames;
}

/* ------------------------------------------------------------------ */
/* Reading                                                              */
/* ------------------------------------------------------------------ */

static SNDFILE *open_read(const char *op, const char *path, SF_INFO *si) {
  if (path == NULL || path[0] == '\0') {
    vl_error(VL_EARG, "%s: empty path", op);
    return NULL;
  }
  memset(si, 0, sizeof *si);
  SNDFILE *f = sf_open(path, SFM_READ, si);
  if (f == NULL) {
    int e = sf_error(NULL);
    io_fail(e == SF_ERR_SYSTEM ? VL_EIO : VL_EFORMAT, op, path, "cannot open as audio (libsndfile: %s)",
            sf_strerror(NULL));
    return NULL;
  }
  /* libsndfile quietly shortens a WAV-family file whose data chunk runs
     past the end of the file; its log says "data : 8000 (should be 956)" */
  char log[4096];
  log[0] = '\0';
  sf_command(f, SFC_GET_LOG_INFO, log, sizeof log);
  log[sizeof log - 1] = '\0';
  for (const char *p = log; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    long long declared, holds;
    if (sscanf(p, "data : %lld (should be %lld)", &declared, &holds) == 2 && declared > holds &&
        declared != 0xFFFFFFFFLL) {
      io_fail(VL_EFORMAT, op, path,
              "truncated: its data chunk declares %lld bytes but the file holds %lld (libsndfile's log)", declared,
              holds);
      sf_close(f);
      return NULL;
    }
  }
  if (si->channels < 1 || si->samplerate < 1 || si->frames < 0) {
    io_fail(VL_EFORMAT, op, path, "bad header: %d channels, rate %d, %lld frames (expected channels >= 1, rate >= 1)",
            si->channels, si->samplerate, (long long)si->frames);
    sf_close(f);
    return NULL;
  }
  return f;
}

int vl_audio_info(const char *path, vl_audio_meta *info) {
  SF_INFO si;
  SNDFILE *f = open_read("audio.info", path, &si);
  if (f == NULL) return vl_last_status();
  fill_info(&si, info);
  sf_close(f);
  return VL_OK;
}

vl_tensor *vl_audio_read(const char *path, int64_t start, int64_t frames, vl_dtype dt, vl_audio_meta *info) {
  const char *op = "audio.read";
  if (dt != VL_FLOAT32 && dt != VL_FLOAT64)
    return vl_error(VL_EDTYPE, "%s: dtype %s, expected float32 or float64", op, vl_dtype_name(dt)), NULL;
  SF_INFO si;
  SNDFILE *f = open_read(op, path, &si);
  if (f == NULL) return NULL;
  int64_t total = (int64_t)si.frames;
  if (start < 0 || start > total) {
    io_fail(VL_EARG, op, path, "start %lld is outside the file's %lld frames (expected 0..%lld)", (long long)start,
            (long long)total, (long long)total);
    sf_close(f);
    return NULL;
  }
  if (frames < 0 || frames > total - start) frames = total - start;
  int64_t C = si.channels;
  if (frames > 0 && C > INT64_MAX / frames) {
    io_fail(VL_ENOMEM, op, path, "%lld channels x %lld frames overflow", (long long)C, (long long)frames);
    sf_close(f);
    return NULL;
  }
  int64_t shape[2] = {C, frames};
  vl_tensor *y = vl_empty(2, shape, dt);
  if (y == NULL) {
    char msg[VL_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", vl_last_error());
    io_fail(vl_last_status(), op, path, "%s", msg);
    sf_close(f);
    return NULL;
  }
  if (start > 0 && frames > 0 && sf_seek(f, (sf_count_t)start, SEEK_SET) < 0) {
    io_fail(VL_EFORMAT, op, path, "cannot seek to frame %lld (libsndfile: %s)", (long long)start, sf_strerror(f));
    vl_tensor_release(y);
    sf_close(f);
    return NULL;
  }
  int64_t chunk = frames < AUDIO_CHUNK ? frames : AUDIO_CHUNK;
  size_t esz = dt == VL_FLOAT64 ? sizeof(double) : sizeof(float);
  void *buf = chunk > 0 ? malloc(esz * (size_t)chunk * (size_t)C) : NULL;
  if (chunk > 0 && buf == NULL) {
    io_fail(VL_ENOMEM, op, path, "out of memory for a read buffer of %lld frames", (long long)chunk);
    vl_tensor_release(y);
    sf_close(f);
    return NULL;
  }
  void *yd = vl_data_ptr(y);
  for (int64_t done = 0; done < frames;) {
    int64_t want = frames - done < chunk ? frames - done : chunk;
    sf_count_t got = dt == VL_FLOAT64 ? sf_readf_double(f, buf, (sf_count_t)want)
                                      : sf_readf_float(f, buf, (sf_count_t)want);
    if (got != (sf_count_t)want) {
      const char *why = sf_error(f) ? sf_strerror(f) : "end of data";
      io_fail(VL_EFORMAT, op, path, "truncated or corrupt: read %lld of %lld frames from frame %lld (libsndfile: %s)",
              (long long)(done + (got > 0 ? got : 0)), (long long)frames, (long long)start, why);
      free(buf);
      vl_tensor_release(y);
      sf_close(f);
      return NULL;
    }
    if (dt == VL_FLOAT64) {
      const double *b = buf;
      double *o = yd;
      for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < want; i++) o[c * frames + done + i] = b[i * C + c];
    } else {
      const float *b = buf;
      float *o = yd;
      for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < want; i++) o[c * frames + done + i] = b[i * C + c];
    }
    done += want;
  }
  free(buf);
  fill_info(&si, info);
  sf_close(f);
  return y;
}

/* ------------------------------------------------------------------ */
/* Writing                                                              */
/* ------------------------------------------------------------------ */

static void atomic_discard(io_atomic *a) {
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  if (a->tmp) {
    unlink(a->tmp);
    free(a->tmp);
    a->tmp = NULL;
  }
}

/* Bits of a PCM subtype this writer converts itself (0: not PCM). */
static int pcm_bits(int sub) {
  switch (sub) {
  case SF_FORMAT_PCM_S8: case SF_FORMAT_PCM_U8: return 8;
  case SF_FORMAT_PCM_16: return 16;
  case SF_FORMAT_PCM_24: return 24;
  case SF_FORMAT_PCM_32: return 32;
  default: return 0;
  }
}

static int major_from_path(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (dot == NULL || (slash && dot < slash)) return 0;
  if (strcasecmp(dot, ".wav") == 0) return SF_FORMAT_WAV;
  if (strcasecmp(dot, ".flac") == 0) return SF_FORMAT_FLAC;
  if (strcasecmp(dot, ".ogg") == 0 || strcasecmp(dot, ".oga") == 0) return SF_FORMAT_OGG;
  return 0;
}

int vl_audio_write(const char *path, const vl_tensor *x, int64_t rate, const char *format, const char *subtype,
                   double quality) {
  const char *op = "audio.write";
  char s1[VL_SHAPE_STR];
  if (path == NULL || path[0] == '\0') return vl_error(VL_EARG, "%s: empty path", op);
  if (x == NULL) return vl_error(VL_EARG, "%s: no tensor", op);
  if (x->ndim != 1 && x->ndim != 2)
    return io_fail(VL_ESHAPE, op, path, "samples of shape %s, expected [samples] or [channels, samples]",
                   vl_shape_str(x->ndim, x->shape, s1));
  if (!vl_dtype_is_float(x->dtype))
    return io_fail(VL_EDTYPE, op, path, "samples are %s, expected a float dtype (full scale is [-1, 1))",
                   vl_dtype_name(x->dtype));
  int64_t C = x->ndim == 2 ? x->shape[0] : 1, N = x->shape[x->ndim - 1];
  if (C < 1 || C > 1024)
    return io_fail(VL_ESHAPE, op, path, "%lld channels (shape %s), expected 1..1024", (long long)C,
                   vl_shape_str(x->ndim, x->shape, s1));
  if (rate < 1 || rate > INT_MAX)
    return io_fail(VL_EARG, op, path, "sample rate %lld, expected a positive integer", (long long)rate);
  int major = 0;
  if (format && format[0]) {
    major = code_of(major_names, format);
    if (major != SF_FORMAT_WAV && major != SF_FORMAT_FLAC && major != SF_FORMAT_OGG)
      return io_fail(VL_EARG, op, path, "unknown format '%s' (expected WAV, FLAC or OGG)", format);
  } else {
    major = major_from_path(path);
    if (major == 0)
      return io_fail(VL_EARG, op, path,
                     "cannot tell the format from the extension (expected .wav, .flac or .ogg, or give format)");
  }
  int sub = 0;
  if (subtype && subtype[0]) {
    sub = code_of(sub_names, subtype);
    bool ok = false;
    if (major == SF_FORMAT_WAV)
      ok = sub == SF_FORMAT_PCM_16 || sub == SF_FORMAT_PCM_24 || sub == SF_FORMAT_PCM_32 || sub == SF_FORMAT_PCM_U8 ||
           sub == SF_FORMAT_FLOAT || sub == SF_FORMAT_DOUBLE;
    else if (major == SF_FORMAT_FLAC)
      ok = sub == SF_FORMAT_PCM_16 || sub == SF_FORMAT_PCM_24 || sub == SF_FORMAT_PCM_S8;
    else
      ok = sub == SF_FORMAT_VORBIS;
    if (!ok)
      return io_fail(VL_EARG, op, path, "subtype '%s' is not written for %s (expected %s)", subtype,
                     major == SF_FORMAT_WAV ? "WAV" : major == SF_FORMAT_FLAC ? "FLAC" : "OGG",
                     major == SF_FORMAT_WAV    ? "PCM_16, PCM_24, PCM_32, PCM_U8, FLOAT or DOUBLE"
                     : major == SF_FORMAT_FLAC ? "PCM_16, PCM_24 or PCM_S8"
                                               : "VORBIS");
  } else {
    sub = major == SF_FORMAT_OGG ? SF_FORMAT_VORBIS : SF_FORMAT_PCM_16;
  }
  if (!isnan(quality) && (quality < 0 || quality > 1))
    return io_fail(VL_EARG, op, path, "quality %g, expected 0..1 (Vorbis only)", quality);
  SF_INFO si;
  memset(&si, 0, sizeof si);
  si.samplerate = (int)rate;
  si.channels = (int)C;
  si.format = major | sub;
  if (!sf_format_check(&si))
    return io_fail(VL_EARG, op, path, "libsndfile refuses %s with %lld channels at %lld Hz",
                   major == SF_FORMAT_WAV ? "WAV" : major == SF_FORMAT_FLAC ? "FLAC" : "OGG/VORBIS", (long long)C,
                   (long long)rate);
  if (major == SF_FORMAT_FLAC && N == 0)
    return io_fail(VL_EARG, op, path, "no samples: libsndfile writes an empty FLAC as a 0-byte file no reader accepts "
                                      "(expected at least 1 sample per channel)");
  int bits = pcm_bits(sub);
  bool isfloat = sub == SF_FORMAT_FLOAT || sub == SF_FORMAT_DOUBLE;

  /* the samples as contiguous double [C, N] (float stays exact) */
  bool was = vl_ag_pause();
  vl_tensor *xd = vl_to_dtype(x, VL_FLOAT64), *xc = xd ? vl_contiguous(xd) : NULL;
  vl_set_grad_enabled(was);
  vl_tensor_release(xd);
  if (xc == NULL) return vl_last_status();
  const double *xs = vl_data_ptr(xc);
  if (!isfloat) {
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < N; i++)
        if (!isfinite(xs[c * N + i])) {
          double v = xs[c * N + i];
          vl_tensor_release(xc);
          return io_fail(VL_EARG, op, path, "sample %lld of channel %lld is %s: %s cannot store NaN or infinity",
                         (long long)(i + 1), (long long)(c + 1), isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf",
                         sub == SF_FORMAT_VORBIS ? "VORBIS" : subtype && subtype[0] ? subtype : "PCM_16");
        }
  }

  io_atomic a;
  if (vl__atomic_begin(&a, op, path) != VL_OK) {
    vl_tensor_release(xc);
    return vl_last_status();
  }
  SNDFILE *f = sf_open_fd(a.fd, SFM_WRITE, &si, SF_FALSE);
  if (f == NULL) {
    int st = io_fail(VL_EIO, op, path, "libsndfile cannot start the file: %s", sf_strerror(NULL));
    atomic_discard(&a);
    vl_tensor_release(xc);
    return st;
  }
  sf_command(f, SFC_SET_CLIPPING, NULL, SF_TRUE);
  if (sub == SF_FORMAT_VORBIS && !isnan(quality)) sf_command(f, SFC_SET_VBR_ENCODING_QUALITY, &quality, sizeof quality);
  int64_t chunk = N < AUDIO_CHUNK ? N : AUDIO_CHUNK;
  size_t esz = bits ? sizeof(int) : sub == SF_FORMAT_DOUBLE ? sizeof(double) : sizeof(float);
  void *buf = chunk > 0 ? malloc(esz * (size_t)chunk * (size_t)C) : NULL;
  int st = VL_OK;
  if (chunk > 0 && buf == NULL) st = io_fail(VL_ENOMEM, op, path, "out of memory for a write buffer");
  double full = bits ? ldexp(1.0, bits - 1) : 1.0;
  double shift = bits ? ldexp(1.0, 32 - bits) : 1.0;
  for (int64_t done = 0; st == VL_OK && done < N;) {
    int64_t n = N - done < chunk ? N - done : chunk;
    for (int64_t i = 0; i < n; i++)
      for (int64_t c = 0; c < C; c++) {
        double v = xs[c * N + done + i];
        size_t k = (size_t)(i * C + c);
        if (bits) {
          double q = nearbyint(v * full);
          if (q > full - 1) q = full - 1;
          if (q < -full) q = -full;
          ((int *)buf)[k] = (int)(int64_t)(q * shift);
        } else if (sub == SF_FORMAT_DOUBLE) {
          ((double *)buf)[k] = v;
        } else {
          ((float *)buf)[k] = (float)v;
        }
      }
    sf_count_t w = bits ? sf_writef_int(f, buf, (sf_count_t)n)
                   : sub == SF_FORMAT_DOUBLE ? sf_writef_double(f, buf, (sf_count_t)n)
                                             : sf_writef_float(f, buf, (sf_count_t)n);
    if (w != (sf_count_t)n)
      st = io_fail(VL_EIO, op, path, "libsndfile wrote %lld of %lld frames (%s); the file was left as it was",
                   (long long)(done + (w > 0 ? w : 0)), (long long)N, sf_strerror(f));
    done += n;
  }
  free(buf);
  vl_tensor_release(xc);
  if (sf_close(f) != 0 && st == VL_OK)
    st = io_fail(VL_EIO, op, path, "libsndfile could not finish the file; the file was left as it was");
  if (st != VL_OK) {
    atomic_discard(&a);
    return st;
  }
  return vl__atomic_commit(&a);
}

/* ------------------------------------------------------------------ */
/* Resampling (torchaudio.functional.resample, sinc_interp_hann)        */
/* ------------------------------------------------------------------ */

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    int64_t t = a % b;
    a = b, b = t;
  }
  return a;
}

/* The polyphase kernel [new, 1, 2 width + orig] of
   torchaudio's _get_sinc_resample_kernel, in float64. */
static vl_tensor *resample_kernel(int64_t orig, int64_t nw, int64_t lpw, double rolloff, int64_t *width_out) {
  double base = (double)(orig < nw ? orig : nw) * rolloff;
  int64_t width = (int64_t)ceil((double)lpw * (double)orig / base);
  int64_t K = 2 * width + orig;
  int64_t shape[3] = {nw, 1, K};
  if (K > ((int64_t)1 << 40) / nw)
    return vl_error(VL_EARG, "audio.resample: a %lld:%lld ratio (after dividing by the gcd) needs a kernel of %lld x %lld "
                             "taps; choose rates with a larger common divisor",
                    (long long)orig, (long long)nw, (long long)nw, (long long)K),
           NULL;
  vl_tensor *k = vl_empty(3, shape, VL_FLOAT64);
  if (k == NULL) return NULL;
  double *kd = vl_data_ptr(k);
  double scale = base / (double)orig;
  for (int64_t p = 0; p < nw; p++)
    for (int64_t j = 0; j < K; j++) {
      double t = ((double)(-p) / (double)nw + (double)(j - width) / (double)orig) * base;
      if (t < -(double)lpw) t = -(double)lpw;
      if (t > (double)lpw) t = (double)lpw;
      double c = cos(t * M_PI / (double)lpw / 2);
      double win = c * c;
      t *= M_PI;
      kd[p * K + j] = (t == 0 ? 1.0 : sin(t) / t) * win * scale;
    }
  *width_out = width;
  return k;
}

vl_tensor *vl_audio_resample(const vl_tensor *x, int64_t orig_rate, int64_t new_rate, int64_t lowpass_filter_width,
                             double rolloff) {
  const char *op = "audio.resample";
  char s1[VL_SHAPE_STR];
  if (x == NULL) return vl_error(VL_EARG, "%s: no input tensor", op), NULL;
  if (x->dtype != VL_FLOAT32 && x->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, "%s: input is %s, expected float32 or float64", op, vl_dtype_name(x->dtype)), NULL;
  if (x->ndim < 1) return vl_error(VL_ESHAPE, "%s: input is 0-d, expected [..., samples]", op), NULL;
  if (orig_rate <= 0 || new_rate <= 0)
    return vl_error(VL_EARG, "%s: rates %lld -> %lld, expected both > 0", op, (long long)orig_rate,
                    (long long)new_rate),
           NULL;
  if (lowpass_filter_width < 1)
    return vl_error(VL_EARG, "%s: lowpass_filter_width %lld, expected >= 1", op, (long long)lowpass_filter_width),
           NULL;
  if (!(rolloff > 0 && rolloff <= 1))
    return vl_error(VL_EARG, "%s: rolloff %g, expected 0 < rolloff <= 1", op, rolloff), NULL;
  if (orig_rate == new_rate) {
    vl_tensor_retain((vl_tensor *)x);
    return (vl_tensor *)x;
  }
  int64_t g = gcd64(orig_rate, new_rate);
  int64_t orig = orig_rate / g, nw = new_rate / g;
  int64_t L = x->shape[x->ndim - 1], B = 1;
  for (int d = 0; d < x->ndim - 1; d++) B *= x->shape[d];
  int64_t prod;
  if (__builtin_mul_overflow(nw, L, &prod))
    return vl_error(VL_EARG, "%s: %lld samples x %lld overflow", op, (long long)L, (long long)nw), NULL;
  int64_t target = prod / orig + (prod % orig != 0);
  int64_t oshape[VL_MAX_DIMS];
  for (int d = 0; d < x->ndim - 1; d++) oshape[d] = x->shape[d];
  oshape[x->ndim - 1] = target;
  if (B == 0 || target == 0) return vl_zeros(x->ndim, oshape, x->dtype);

  int64_t width = 0;
  vl_tensor *k64 = resample_kernel(orig, nw, lowpass_filter_width, rolloff, &width);
  if (k64 == NULL) return NULL;
  vl_tensor *k = vl_to_dtype(k64, x->dtype);
  vl_tensor_release(k64);
  if (k == NULL) return NULL;
  /* [B, 1, L] -> conv1d (stride orig, pad width | width + orig) -> [B, new, T]
     -> [B, T, new] -> [B, T * new] -> first target samples */
  int64_t s3[3] = {B, 1, L};
  vl_tensor *x3 = vl_reshape(x, 3, s3);
  vl_tensor *y = x3 ? vl_conv1d_pad(x3, k, NULL, orig, width, width + orig, 1, 1) : NULL;
  vl_tensor_release(x3);
  vl_tensor_release(k);
  if (y == NULL) {
    char msg[VL_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", vl_last_error());
    return vl_error(vl_last_status(), "%s: input %s: %s", op, vl_shape_str(x->ndim, x->shape, s1), msg), NULL;
  }
  vl_tensor *yt = vl_transpose(y, 1, 2);
  vl_tensor_release(y);
  if (yt == NULL) return NULL;
  int64_t s2[2] = {B, yt->shape[1] * nw};
  vl_tensor *y2 = vl_reshape(yt, 2, s2);
  vl_tensor_release(yt);
  if (y2 == NULL) return NULL;
  vl_tensor *yn = vl_narrow(y2, 1, 0, target);
  vl_tensor_release(y2);
  if (yn == NULL) return NULL;
  vl_tensor *out = vl_reshape(yn, x->ndim, oshape);
  vl_tensor_release(yn);
  return out;
}
