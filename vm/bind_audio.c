/*
** bind_audio.c — Lua binding of ops/audio.c and ops/stft.c, as the table
** vl.audio:
**
**   vl.audio.info(path) -> {format, subtype, channels, rate, frames, duration}
**   vl.audio.read(path, {dtype, start, frames}) -> x [C, n], rate, info
**   vl.audio.write(path, x, rate, {format, subtype, quality})
**   vl.audio.resample(x, from, to, {lowpass_filter_width, rolloff})
**   vl.audio.stft(x, {n_fft, hop_length, win_length, window, center,
**                     pad_mode, normalized, onesided})
**   vl.audio.istft(X, {n_fft, hop_length, win_length, window, center,
**                      normalized, onesided, length})
**   vl.audio.mel_filterbank(n_freqs, f_min, f_max, n_mels, sample_rate,
**                           {norm, mel_scale, dtype})
**   vl.audio.melspectrogram(x, {sample_rate, n_fft, ...})
**   vl.audio.mfcc(x, {sample_rate, n_mfcc, log_mels, top_db, melkwargs})
**
** Everything a user calls is registered here in C, so it works right
** after require "vl". start/frames are 0-based sample offsets/counts
** (not indices). Unknown option keys are refused.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

/* ------------------------------------------------------------------ */
/* Option helpers that name the op                                      */
/* ------------------------------------------------------------------ */

static int opt_table(lua_State *L, int idx, const char *op, const char *what) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TTABLE || vlua_totensor(L, idx))
    luaL_error(L, "%s: argument %d must be an options table {%s}, got %s", op, idx, what, luaL_typename(L, idx));
  if (!lua_isnone(L, idx + 1)) luaL_error(L, "%s: arguments after the options table", op);
  return idx;
}

static lua_Integer opt_int(lua_State *L, int opt, const char *key, lua_Integer def, const char *op) {
  if (opt == 0) return def;
  int t = lua_getfield(L, opt, key);
  lua_Integer v = def;
  if (t != LUA_TNIL) {
    if (!lua_isinteger(L, -1))
      luaL_error(L, "%s: option '%s' must be an integer, got %s", op, key,
                 t == LUA_TNUMBER ? lua_tostring(L, -1) : lua_typename(L, t));
    v = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static double opt_num(lua_State *L, int opt, const char *key, double def, const char *op) {
  if (opt == 0) return def;
  int t = lua_getfield(L, opt, key);
  double v = def;
  if (t != LUA_TNIL) {
    if (t != LUA_TNUMBER) luaL_error(L, "%s: option '%s' must be a number, got %s", op, key, lua_typename(L, t));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static bool opt_bool(lua_State *L, int opt, const char *key, bool def, const char *op) {
  if (opt == 0) return def;
  int t = lua_getfield(L, opt, key);
  bool v = def;
  if (t != LUA_TNIL) {
    if (t != LUA_TBOOLEAN) luaL_error(L, "%s: option '%s' must be a boolean, got %s", op, key, lua_typename(L, t));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* A string option (kept alive by the options table) or def. */
static const char *opt_str(lua_State *L, int opt, const char *key, const char *def, const char *op) {
  if (opt == 0) return def;
  int t = lua_getfield(L, opt, key);
  const char *v = def;
  if (t != LUA_TNIL) {
    if (t != LUA_TSTRING) luaL_error(L, "%s: option '%s' must be a string, got %s", op, key, lua_typename(L, t));
    v = lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* window = "hann" (NULL: a periodic Hann window) or a tensor. */
static vl_tensor *opt_window(lua_State *L, int opt, const char *op) {
  if (opt == 0) return NULL;
  int t = lua_getfield(L, opt, "window");
  vl_tensor *w = NULL;
  if (t == LUA_TSTRING) {
    if (strcmp(lua_tostring(L, -1), "hann") != 0)
      luaL_error(L, "%s: unknown window '%s' (expected \"hann\" or a 1-d tensor)", op, lua_tostring(L, -1));
  } else if (t != LUA_TNIL) {
    w = vlua_totensor(L, -1);
    if (w == NULL) luaL_error(L, "%s: option 'window' must be \"hann\" or a tensor, got %s", op, lua_typename(L, t));
  }
  lua_pop(L, 1); /* the options table keeps the tensor alive */
  return w;
}

static vl_pad_mode opt_pad_mode(lua_State *L, int opt, const char *op) {
  const char *m = opt_str(L, opt, "pad_mode", "reflect", op);
  if (strcmp(m, "reflect") == 0) return VL_PAD_REFLECT;
  if (strcmp(m, "constant") == 0) return VL_PAD_CONSTANT;
  luaL_error(L, "%s: unknown pad_mode '%s' (expected \"reflect\" or \"constant\")", op, m);
  return VL_PAD_REFLECT;
}

static void push_info(lua_State *L, const vl_audio_meta *in) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, in->format);
  lua_setfield(L, -2, "format");
  lua_pushstring(L, in->subtype);
  lua_setfield(L, -2, "subtype");
  lua_pushinteger(L, in->channels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, in->rate);
  lua_setfield(L, -2, "rate");
  lua_pushinteger(L, (lua_Integer)in->frames);
  lua_setfield(L, -2, "frames");
  lua_pushnumber(L, in->rate > 0 ? (double)in->frames / in->rate : 0);
  lua_setfield(L, -2, "duration");
}

/* ------------------------------------------------------------------ */
/* Files                                                                */
/* ------------------------------------------------------------------ */

static int l_info(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_audio_meta in;
  vlua_check(L, vl_audio_info(path, &in));
  push_info(L, &in);
  return 1;
}

static const char *const read_keys[] = {"dtype", "start", "frames", NULL};

static int l_read(lua_State *L) {
  const char *op = "audio.read";
  const char *path = luaL_checkstring(L, 1);
  int opt = opt_table(L, 2, op, "dtype, start, frames");
  vlua_conv_check_keys(L, opt, op, read_keys);
  vl_dtype dt = vlua_optdtype(L, opt, "dtype", VL_FLOAT32);
  lua_Integer start = opt_int(L, opt, "start", 0, op);
  lua_Integer frames = opt_int(L, opt, "frames", -1, op);
  if (start < 0) luaL_error(L, "%s: %s: start %d, expected >= 0 (a 0-based sample offset)", op, path, (int)start);
  if (frames < -1 || (frames == -1 && opt && lua_getfield(L, opt, "frames") != LUA_TNIL))
    luaL_error(L, "%s: %s: frames %d, expected >= 0", op, path, (int)frames);
  vl_audio_meta in;
  vlua_pushtensor(L, vl_audio_read(path, (int64_t)start, (int64_t)frames, dt, &in));
  lua_pushinteger(L, in.rate);
  push_info(L, &in);
  return 3;
}

static const char *const write_keys[] = {"format", "subtype", "quality", NULL};

static int l_write(lua_State *L) {
  const char *op = "audio.write";
  const char *path = luaL_checkstring(L, 1);
  vl_tensor *x = vlua_checktensor(L, 2);
  if (!lua_isinteger(L, 3))
    luaL_error(L, "%s: %s: argument 3 (sample rate) must be an integer, got %s", op, path,
               lua_type(L, 3) == LUA_TNUMBER ? lua_tostring(L, 3) : luaL_typename(L, 3));
  lua_Integer rate = lua_tointeger(L, 3);
  int opt = opt_table(L, 4, op, "format, subtype, quality");
  vlua_conv_check_keys(L, opt, op, write_keys);
  const char *format = opt_str(L, opt, "format", NULL, op);
  const char *subtype = opt_str(L, opt, "subtype", NULL, op);
  double quality = opt_num(L, opt, "quality", NAN, op);
  vlua_check(L, vl_audio_write(path, x, (int64_t)rate, format, subtype, quality));
  return 0;
}

/* ------------------------------------------------------------------ */
/* Resampling and spectra                                               */
/* ------------------------------------------------------------------ */

static const char *const resample_keys[] = {"lowpass_filter_width", "rolloff", NULL};

static lua_Integer check_rate(lua_State *L, int idx, const char *op, const char *what) {
  if (!lua_isinteger(L, idx))
    luaL_error(L, "%s: %s must be an integer number of Hz, got %s", op, what,
               lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
  return lua_tointeger(L, idx);
}

static int l_resample(lua_State *L) {
  const char *op = "audio.resample";
  vl_tensor *x = vlua_checktensor(L, 1);
  lua_Integer from = check_rate(L, 2, op, "argument 2 (from_rate)");
  lua_Integer to = check_rate(L, 3, op, "argument 3 (to_rate)");
  int opt = opt_table(L, 4, op, "lowpass_filter_width, rolloff");
  vlua_conv_check_keys(L, opt, op, resample_keys);
  lua_Integer lpw = opt_int(L, opt, "lowpass_filter_width", 6, op);
  double rolloff = opt_num(L, opt, "rolloff", 0.99, op);
  vlua_pushtensor(L, vl_audio_resample(x, (int64_t)from, (int64_t)to, (int64_t)lpw, rolloff));
  return 1;
}

static const char *const stft_keys[] = {"n_fft", "hop_length", "win_length", "window", "center",
                                        "pad_mode", "normalized", "onesided", "return_complex", NULL};

static lua_Integer need_n_fft(lua_State *L, int opt, const char *op) {
  lua_Integer n = opt_int(L, opt, "n_fft", -1, op);
  if (opt == 0 || n == -1) luaL_error(L, "%s: option n_fft is required (e.g. {n_fft = 400})", op);
  return n;
}

static int l_stft(lua_State *L) {
  const char *op = "stft";
  vl_tensor *x = vlua_checktensor(L, 1);
  int opt = opt_table(L, 2, op, "n_fft, hop_length, win_length, window, center, pad_mode, normalized, onesided");
  vlua_conv_check_keys(L, opt, op, stft_keys);
  lua_Integer n = need_n_fft(L, opt, op);
  lua_Integer win = opt_int(L, opt, "win_length", n, op);
  lua_Integer hop = opt_int(L, opt, "hop_length", n / 4 > 0 ? n / 4 : 1, op);
  if (!opt_bool(L, opt, "return_complex", true, op))
    luaL_error(L, "%s: return_complex = false is not offered (the result is always [..., freq, frames, 2])", op);
  vl_tensor *w = opt_window(L, opt, op);
  vlua_pushtensor(L, vl_stft(x, (int64_t)n, (int64_t)hop, (int64_t)win, w, opt_bool(L, opt, "center", true, op),
                             opt_pad_mode(L, opt, op), opt_bool(L, opt, "normalized", false, op),
                             opt_bool(L, opt, "onesided", true, op)));
  return 1;
}

static const char *const istft_keys[] = {"n_fft",      "hop_length", "win_length", "window", "center",
                                         "normalized", "onesided",   "length",     NULL};

static int l_istft(lua_State *L) {
  const char *op = "istft";
  vl_tensor *X = vlua_checktensor(L, 1);
  int opt = opt_table(L, 2, op, "n_fft, hop_length, win_length, window, center, normalized, onesided, length");
  vlua_conv_check_keys(L, opt, op, istft_keys);
  lua_Integer n = need_n_fft(L, opt, op);
  lua_Integer win = opt_int(L, opt, "win_length", n, op);
  lua_Integer hop = opt_int(L, opt, "hop_length", n / 4 > 0 ? n / 4 : 1, op);
  lua_Integer length = opt_int(L, opt, "length", -1, op);
  if (opt) {
    lua_getfield(L, opt, "length");
    if (!lua_isnil(L, -1) && length < 0) luaL_error(L, "%s: length %d, expected >= 0", op, (int)length);
    lua_pop(L, 1);
  }
  int onesided = -1;
  if (opt) {
    lua_getfield(L, opt, "onesided");
    if (!lua_isnil(L, -1)) onesided = opt_bool(L, opt, "onesided", true, op);
    lua_pop(L, 1);
  }
  vl_tensor *w = opt_window(L, opt, op);
  vlua_pushtensor(L, vl_istft(X, (int64_t)n, (int64_t)hop, (int64_t)win, w, opt_bool(L, opt, "center", true, op),
                              opt_bool(L, opt, "normalized", false, op), onesided, (int64_t)length));
  return 1;
}

static void opt_mel_norm(lua_State *L, int opt, const char *op, bool *slaney_norm, bool *slaney_scale) {
  const char *norm = opt_str(L, opt, "norm", NULL, op);
  if (norm && strcmp(norm, "slaney") != 0) luaL_error(L, "%s: unknown norm '%s' (expected nil or \"slaney\")", op, norm);
  *slaney_norm = norm != NULL;
  const char *scale = opt_str(L, opt, "mel_scale", "htk", op);
  if (strcmp(scale, "htk") && strcmp(scale, "slaney"))
    luaL_error(L, "%s: unknown mel_scale '%s' (expected \"htk\" or \"slaney\")", op, scale);
  *slaney_scale = strcmp(scale, "slaney") == 0;
}

static const char *const fbank_keys[] = {"norm", "mel_scale", "dtype", NULL};

static int l_mel_filterbank(lua_State *L) {
  const char *op = "audio.mel_filterbank";
  lua_Integer n_freqs = luaL_checkinteger(L, 1);
  double f_min = luaL_checknumber(L, 2), f_max = luaL_checknumber(L, 3);
  lua_Integer n_mels = luaL_checkinteger(L, 4);
  double rate = luaL_checknumber(L, 5);
  int opt = opt_table(L, 6, op, "norm, mel_scale, dtype");
  vlua_conv_check_keys(L, opt, op, fbank_keys);
  bool sn, ss;
  opt_mel_norm(L, opt, op, &sn, &ss);
  vl_dtype dt = vlua_optdtype(L, opt, "dtype", VL_FLOAT32);
  vlua_pushtensor(L, vl_mel_filterbank((int64_t)n_freqs, f_min, f_max, (int64_t)n_mels, rate, sn, ss, dt));
  return 1;
}

static const char *const mel_keys[] = {"sample_rate", "n_fft",      "win_length", "hop_length", "f_min",
                                       "f_max",       "n_mels",     "power",      "normalized", "center",
                                       "pad_mode",    "norm",       "mel_scale",  "window",     NULL};

/* The mel options from table opt (0: defaults); sample_rate may come
   from `rate_opt` instead (mfcc's top level). */
static void mel_opts(lua_State *L, int opt, int rate_opt, const char *op, vl_melspec_opts *o) {
  vl_melspec_defaults(o);
  vlua_conv_check_keys(L, opt, op, mel_keys);
  o->sample_rate = opt_num(L, opt, "sample_rate", o->sample_rate, op);
  if (rate_opt) o->sample_rate = opt_num(L, rate_opt, "sample_rate", o->sample_rate, op);
  o->n_fft = opt_int(L, opt, "n_fft", o->n_fft, op);
  o->win_length = opt_int(L, opt, "win_length", o->n_fft, op);
  o->hop_length = opt_int(L, opt, "hop_length", o->win_length / 2, op);
  if (o->hop_length < 1) luaL_error(L, "%s: hop_length %d, expected >= 1", op, (int)o->hop_length);
  if (o->win_length < 1) luaL_error(L, "%s: win_length %d, expected >= 1", op, (int)o->win_length);
  o->f_min = opt_num(L, opt, "f_min", 0, op);
  o->f_max = opt_num(L, opt, "f_max", NAN, op);
  o->n_mels = opt_int(L, opt, "n_mels", o->n_mels, op);
  o->power = opt_num(L, opt, "power", o->power, op);
  o->normalized = opt_bool(L, opt, "normalized", false, op);
  o->center = opt_bool(L, opt, "center", true, op);
  o->pad_mode = opt_pad_mode(L, opt, op);
  opt_mel_norm(L, opt, op, &o->slaney_norm, &o->slaney_scale);
  o->window = opt_window(L, opt, op);
}

static int l_melspectrogram(lua_State *L) {
  const char *op = "audio.melspectrogram";
  vl_tensor *x = vlua_checktensor(L, 1);
  int opt = opt_table(L, 2, op, "sample_rate, n_fft, win_length, hop_length, f_min, f_max, n_mels, power, ...");
  vl_melspec_opts o;
  mel_opts(L, opt, 0, op, &o);
  vlua_pushtensor(L, vl_melspectrogram(x, &o));
  return 1;
}

static const char *const mfcc_keys[] = {"sample_rate", "n_mfcc", "log_mels", "top_db", "melkwargs", "dct_type",
                                        "norm", NULL};

static int l_mfcc(lua_State *L) {
  const char *op = "audio.mfcc";
  vl_tensor *x = vlua_checktensor(L, 1);
  int opt = opt_table(L, 2, op, "sample_rate, n_mfcc, log_mels, top_db, melkwargs");
  vlua_conv_check_keys(L, opt, op, mfcc_keys);
  if (opt_int(L, opt, "dct_type", 2, op) != 2) luaL_error(L, "%s: only dct_type = 2 is offered", op);
  const char *norm = opt_str(L, opt, "norm", "ortho", op);
  if (strcmp(norm, "ortho")) luaL_error(L, "%s: only norm = \"ortho\" is offered, got '%s'", op, norm);
  lua_Integer n_mfcc = opt_int(L, opt, "n_mfcc", 40, op);
  bool log_mels = opt_bool(L, opt, "log_mels", false, op);
  double top_db = 80;
  if (opt) {
    int t = lua_getfield(L, opt, "top_db");
    if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))
      top_db = NAN;
    else if (t != LUA_TNIL)
      top_db = opt_num(L, opt, "top_db", 80, op);
    lua_pop(L, 1);
  }
  int mk = 0;
  if (opt) {
    int t = lua_getfield(L, opt, "melkwargs");
    if (t != LUA_TNIL && t != LUA_TTABLE) luaL_error(L, "%s: option 'melkwargs' must be a table, got %s", op, lua_typename(L, t));
    if (t == LUA_TTABLE) mk = lua_gettop(L); /* stays on the stack */
    else lua_pop(L, 1);
  }
  vl_melspec_opts o;
  mel_opts(L, mk, opt, op, &o);
  vlua_pushtensor(L, vl_mfcc(x, &o, (int64_t)n_mfcc, log_mels, top_db));
  return 1;
}

static const vlua_Reg audio_regs[] = {
    {"info", l_info, 0, "vl.audio.info(path) -> {format, subtype, channels, rate, frames, duration} -- what libsndfile says of an audio file"},
    {"read", l_read, 0,
     "vl.audio.read(path, {dtype = \"float32\", start = 0, frames}) -> x [channels, samples], rate, info -- WAV, "
     "FLAC, OGG, ... through libsndfile (PCM scaled to [-1, 1))"},
    {"write", l_write, 0,
     "vl.audio.write(path, x, rate, {format, subtype = \"PCM_16\", quality}) -- WAV/FLAC/OGG by extension, "
     "atomic; PCM saturates, NaN refused"},
    {"resample", l_resample, 0,
     "vl.audio.resample(x, from_rate, to_rate, {lowpass_filter_width = 6, rolloff = 0.99}) -> Tensor -- "
     "torchaudio's windowed-sinc (Hann) resampling along the last dim"},
    {"stft", l_stft, 0,
     "vl.audio.stft(x, {n_fft, hop_length = n_fft//4, win_length = n_fft, window = \"hann\", center = true, "
     "pad_mode = \"reflect\", normalized = false, onesided = true}) -> [..., freq, frames, 2] -- torch.stft"},
    {"istft", l_istft, 0,
     "vl.audio.istft(X, {n_fft, hop_length = n_fft//4, win_length = n_fft, window = \"hann\", center = true, "
     "normalized = false, onesided, length}) -> [..., samples] -- torch.istft"},
    {"mel_filterbank", l_mel_filterbank, 0,
     "vl.audio.mel_filterbank(n_freqs, f_min, f_max, n_mels, sample_rate, {norm, mel_scale = \"htk\", dtype}) -> "
     "[n_freqs, n_mels] -- torchaudio.functional.melscale_fbanks"},
    {"melspectrogram", l_melspectrogram, 0,
     "vl.audio.melspectrogram(x, {sample_rate = 16000, n_fft = 400, hop_length = win_length//2, n_mels = 128, "
     "f_min = 0, f_max, power = 2, ...}) -> [..., n_mels, frames] -- torchaudio MelSpectrogram"},
    {"mfcc", l_mfcc, 0,
     "vl.audio.mfcc(x, {sample_rate = 16000, n_mfcc = 40, log_mels = false, top_db = 80, melkwargs}) -> "
     "[..., n_mfcc, frames] -- torchaudio MFCC"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_audio(lua_State *L) { vlua_register_in(L, "audio", audio_regs); }
