/*
** bind_media.c — Lua binding of ops/media.c (video and image files):
**
**   vl.video.info(path) -> {width, height, fps, frames, frames_exact, duration,
**                           start_time, codec, pixel_format, has_audio, bit_rate}
**   vl.video.read(path, {start | start_time, frames, step, size = {h, w},
**                        resize, format = "THWC"|"TCHW", pixel_format}) -> frames, info
**   for clip, first in vl.video.frames(path, {clip, stride, step, ...}) do ... end
**   vl.video.write(path, frames, {fps, codec, crf, qscale, bitrate, gop, preset,
**                                 format, pixel_format})
**   vl.image.read(path, {format = "HWC"|"CHW", gray}) -> image
**   vl.image.write(path, image, {format, quality})
**
** Frame indices are 1-based here (0-based in ops/). Unknown option keys
** are refused. The clip iterator closes its decoder at the end of the
** loop, when the loop is left early (to-be-closed value) and on __gc.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

#define CLIPS_MT "vl.video.Clips"

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

static int opts_at(lua_State *L, const char *op, int idx, const char *const *keys) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TTABLE || vlua_totensor(L, idx))
    luaL_error(L, "%s: expected an options table as argument %d, got %s", op, idx, luaL_typename(L, idx));
  if (!lua_isnone(L, idx + 1)) luaL_error(L, "%s: arguments after the options table", op);
  vlua_conv_check_keys(L, idx, op, keys);
  return idx;
}

static bool has(lua_State *L, int opt, const char *key) {
  if (!opt) return false;
  bool r = lua_getfield(L, opt, key) != LUA_TNIL;
  lua_pop(L, 1);
  return r;
}

static int64_t opt_int(lua_State *L, const char *op, int opt, const char *key, int64_t def) {
  int t = opt ? lua_getfield(L, opt, key) : (lua_pushnil(L), LUA_TNIL);
  int64_t v = def;
  if (t == LUA_TNIL) {
  } else if (lua_isinteger(L, -1)) {
    v = (int64_t)lua_tointeger(L, -1);
  } else if (t == LUA_TNUMBER && lua_tonumber(L, -1) == floor(lua_tonumber(L, -1)) &&
             fabs(lua_tonumber(L, -1)) < 9.2e18) {
    v = (int64_t)lua_tonumber(L, -1);
  } else {
    luaL_error(L, "%s: option '%s' must be an integer, got %s", op, key,
               t == LUA_TNUMBER ? lua_tostring(L, -1) : lua_typename(L, t));
  }
  lua_pop(L, 1);
  return v;
}

static double opt_num(lua_State *L, const char *op, int opt, const char *key, double def) {
  int t = opt ? lua_getfield(L, opt, key) : (lua_pushnil(L), LUA_TNIL);
  double v = def;
  if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL) luaL_error(L, "%s: option '%s' must be a number, got %s", op, key, lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

static bool opt_bool(lua_State *L, const char *op, int opt, const char *key) {
  int t = opt ? lua_getfield(L, opt, key) : (lua_pushnil(L), LUA_TNIL);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    luaL_error(L, "%s: option '%s' must be a boolean, got %s", op, key, lua_typename(L, t));
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* A string option (the options table keeps it alive). */
static const char *opt_str(lua_State *L, const char *op, int opt, const char *key, const char *def) {
  int t = opt ? lua_getfield(L, opt, key) : (lua_pushnil(L), LUA_TNIL);
  const char *s = def;
  if (t == LUA_TSTRING) s = lua_tostring(L, -1);
  else if (t != LUA_TNIL) luaL_error(L, "%s: option '%s' must be a string, got %s", op, key, lua_typename(L, t));
  lua_pop(L, 1);
  return s;
}

/* One of the listed strings (index into list). */
static int opt_choice(lua_State *L, const char *op, int opt, const char *key, const char *const *list,
                      const char *expected) {
  const char *s = opt_str(L, op, opt, key, list[0]);
  for (int i = 0; list[i]; i++)
    if (strcmp(s, list[i]) == 0) return i;
  return luaL_error(L, "%s: option '%s' is '%s', expected %s", op, key, s, expected);
}

/* The read options shared by video.read and video.frames. */
static void read_opts(lua_State *L, const char *op, int opt, vl_video_read_opts *o) {
  vl_video_read_opts_init(o);
  if (has(L, opt, "start") && has(L, opt, "start_time"))
    luaL_error(L, "%s: give start (a frame) or start_time (seconds), not both", op);
  int64_t start = opt_int(L, op, opt, "start", 1);
  if (start < 1) luaL_error(L, "%s: start %I, expected a frame index >= 1", op, (lua_Integer)start);
  o->start = start - 1;
  if (has(L, opt, "start_time")) {
    o->start_time = opt_num(L, op, opt, "start_time", 0);
    if (!(o->start_time >= 0)) luaL_error(L, "%s: start_time %f, expected >= 0 seconds", op, o->start_time);
  }
  o->frames = opt_int(L, op, opt, "frames", -1);
  if (has(L, opt, "frames") && o->frames < 0)
    luaL_error(L, "%s: frames %I, expected >= 0", op, (lua_Integer)o->frames);
  o->step = opt_int(L, op, opt, "step", 1);
  if (o->step < 1) luaL_error(L, "%s: step %I, expected >= 1", op, (lua_Integer)o->step);
  if (opt && lua_getfield(L, opt, "size") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TTABLE || luaL_len(L, -1) != 2)
      luaL_error(L, "%s: option 'size' must be a table {h, w}", op);
    int64_t hw[2];
    for (int i = 0; i < 2; i++) {
      lua_rawgeti(L, -1, i + 1);
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
        luaL_error(L, "%s: size entries must be positive integers, got %s at %d", op,
                   lua_isinteger(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1), i + 1);
      hw[i] = (int64_t)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    o->height = hw[0], o->width = hw[1];
  }
  if (opt) lua_pop(L, 1);
  static const char *const resize[] = {"bilinear", "area", "bicubic", NULL};
  o->resize = (vl_resize_mode)opt_choice(L, op, opt, "resize", resize, "bilinear, area or bicubic");
  static const char *const fmt[] = {"THWC", "TCHW", NULL};
  o->chw = opt_choice(L, op, opt, "format", fmt, "THWC or TCHW") == 1;
  static const char *const pix[] = {"rgb24", "yuv444p", NULL};
  o->yuv = opt_choice(L, op, opt, "pixel_format", pix, "rgb24 or yuv444p") == 1;
  if (o->yuv && has(L, opt, "format") && !o->chw)
    luaL_error(L, "%s: yuv444p planes come as [T,3,H,W]: use format = \"TCHW\"", op);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
static void set_int(lua_State *L, const char *k, int64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}
static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void push_info(lua_State *L, const vl_video_info *in) {
  lua_createtable(L, 0, 12);
  set_int(L, "width", in->width);
  set_int(L, "height", in->height);
  set_num(L, "fps", in->fps);
  set_int(L, "frames", in->frames);
  lua_pushboolean(L, in->frames_exact);
  lua_setfield(L, -2, "frames_exact");
  set_num(L, "duration", in->duration);
  set_num(L, "start_time", in->start_time);
  set_int(L, "bit_rate", in->bit_rate);
  set_str(L, "codec", in->codec);
  set_str(L, "pixel_format", in->pixel_format);
  lua_pushboolean(L, in->has_audio);
  lua_setfield(L, -2, "has_audio");
  set_int(L, "stream", in->stream + 1);
}

/* ------------------------------------------------------------------ */
/* vl.video                                                             */
/* ------------------------------------------------------------------ */

static int l_info(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_video_info in;
  vlua_check(L, vl_video_probe(path, &in));
  push_info(L, &in);
  return 1;
}

static const char *const READ_KEYS[] = {"start", "start_time", "frames", "step", "size", "resize", "format",
                                        "pixel_format", NULL};

static int l_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int opt = opts_at(L, "video.read", 2, READ_KEYS);
  vl_video_read_opts o;
  read_opts(L, "video.read", opt, &o);
  vl_video_info in;
  int64_t first = 0;
  vl_tensor *t = vl_video_read(path, &o, &in, &first);
  vlua_pushtensor(L, t);
  int64_t T = t->shape[0];
  /* info about what was returned, then the file's */
  push_info(L, &in);
  lua_pushinteger(L, (lua_Integer)in.frames);
  lua_setfield(L, -2, "file_frames");
  set_num(L, "file_duration", in.duration);
  set_int(L, "first", first + 1);
  set_int(L, "frames", T);
  set_int(L, "step", o.step);
  set_num(L, "start_time", (double)first / in.fps);
  set_num(L, "duration", (double)T * (double)o.step / in.fps);
  set_int(L, "height", t->shape[o.chw || o.yuv ? 2 : 1]);
  set_int(L, "width", t->shape[o.chw || o.yuv ? 3 : 2]);
  return 2;
}

typedef struct clips_box {
  vl_video_clips *c;
} clips_box;

static int clips_close(lua_State *L) {
  clips_box *b = luaL_checkudata(L, 1, CLIPS_MT);
  vl_video_clips_close(b->c);
  b->c = NULL;
  return 0;
}

/* iterator(state, control) -> clip, first (1-based) | nil */
static int clips_next(lua_State *L) {
  clips_box *b = luaL_checkudata(L, 1, CLIPS_MT);
  if (b->c == NULL) return 0;
  vl_tensor *t = NULL;
  int64_t first = 0;
  int rc = vl_video_clips_next(b->c, &t, &first);
  if (rc != VL_OK || t == NULL) {
    vl_video_clips_close(b->c);
    b->c = NULL;
    if (rc != VL_OK) return vlua_raise(L);
    return 0;
  }
  vlua_pushtensor(L, t);
  lua_pushinteger(L, (lua_Integer)first + 1);
  return 2;
}

static int clips_tostring(lua_State *L) {
  clips_box *b = luaL_checkudata(L, 1, CLIPS_MT);
  lua_pushstring(L, b->c ? "video clips (open)" : "video clips (closed)");
  return 1;
}

static int l_frames(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const keys[] = {"clip", "stride", "start", "start_time", "frames", "step", "size", "resize",
                                     "format", "pixel_format", NULL};
  int opt = opts_at(L, "video.frames", 2, keys);
  vl_video_read_opts o;
  read_opts(L, "video.frames", opt, &o);
  int64_t clip = opt_int(L, "video.frames", opt, "clip", 16);
  if (clip < 1) luaL_error(L, "video.frames: clip %I, expected >= 1 frames", (lua_Integer)clip);
  int64_t stride = opt_int(L, "video.frames", opt, "stride", clip * o.step);
  if (stride < 1) luaL_error(L, "video.frames: stride %I, expected >= 1", (lua_Integer)stride);
  lua_pushcfunction(L, clips_next);
  clips_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->c = NULL;
  luaL_setmetatable(L, CLIPS_MT);
  b->c = vl_video_clips_open(path, &o, clip, stride);
  if (b->c == NULL) return vlua_raise(L);
  lua_pushnil(L);
  lua_pushvalue(L, -2); /* to-be-closed: closes the decoder when the loop ends or breaks */
  return 4;
}

static int l_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_tensor *frames = vlua_checktensor(L, 2);
  static const char *const keys[] = {"fps", "codec", "crf", "qscale", "bitrate", "gop", "preset", "format",
                                     "pixel_format", NULL};
  const char *op = "video.write";
  int opt = opts_at(L, op, 3, keys);
  vl_video_write_opts o;
  vl_video_write_opts_init(&o);
  o.fps = opt_num(L, op, opt, "fps", 25);
  o.codec = opt_str(L, op, opt, "codec", NULL);
  o.crf = opt_num(L, op, opt, "crf", -1);
  if (has(L, opt, "crf") && !(o.crf >= 0 && o.crf <= 51)) luaL_error(L, "%s: crf %f, expected 0..51", op, o.crf);
  int64_t q = opt_int(L, op, opt, "qscale", 0);
  if (has(L, opt, "qscale") && (q < 1 || q > 31)) luaL_error(L, "%s: qscale %I, expected 1..31", op, (lua_Integer)q);
  o.qscale = (int)q;
  o.bit_rate = opt_int(L, op, opt, "bitrate", 0);
  if (has(L, opt, "bitrate") && o.bit_rate < 1) luaL_error(L, "%s: bitrate %I, expected > 0 bits/s", op,
                                                           (lua_Integer)o.bit_rate);
  int64_t gop = opt_int(L, op, opt, "gop", 0);
  if (has(L, opt, "gop") && (gop < 1 || gop > 100000)) luaL_error(L, "%s: gop %I, expected 1..100000", op,
                                                                  (lua_Integer)gop);
  o.gop = (int)gop;
  o.preset = opt_str(L, op, opt, "preset", NULL);
  static const char *const fmt[] = {"THWC", "TCHW", NULL};
  o.chw = opt_choice(L, op, opt, "format", fmt, "THWC or TCHW") == 1;
  static const char *const pix[] = {"rgb24", "yuv444p", NULL};
  o.yuv = opt_choice(L, op, opt, "pixel_format", pix, "rgb24 or yuv444p") == 1;
  if (o.yuv && frames->dtype != VL_UINT8)
    luaL_error(L, "%s: %s: yuv444p planes must be uint8, got %s", op, path, vl_dtype_name(frames->dtype));
  vlua_check(L, vl_video_write(path, frames, &o));
  return 0;
}

/* ------------------------------------------------------------------ */
/* vl.image                                                             */
/* ------------------------------------------------------------------ */

static int l_image_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  static const char *const keys[] = {"format", "gray", NULL};
  int opt = opts_at(L, "image.read", 2, keys);
  static const char *const fmt[] = {"HWC", "CHW", NULL};
  bool chw = opt_choice(L, "image.read", opt, "format", fmt, "HWC or CHW") == 1;
  bool gray = opt_bool(L, "image.read", opt, "gray");
  vlua_pushtensor(L, vl_image_read(path, chw, gray));
  return 1;
}

static int l_image_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_tensor *img = vlua_checktensor(L, 2);
  static const char *const keys[] = {"format", "quality", NULL};
  int opt = opts_at(L, "image.write", 3, keys);
  static const char *const fmt[] = {"HWC", "CHW", NULL};
  bool chw = opt_choice(L, "image.write", opt, "format", fmt, "HWC or CHW") == 1;
  int64_t q = opt_int(L, "image.write", opt, "quality", 0);
  if (has(L, opt, "quality") && (q < 1 || q > 100))
    luaL_error(L, "image.write: quality %I, expected 1..100", (lua_Integer)q);
  vlua_check(L, vl_image_write(path, img, chw, (int)q));
  return 0;
}

static const vlua_Reg video_regs[] = {
    {"info", l_info, VLUA_FUNC,
     "vl.video.info(path) -> {width, height, fps, frames, frames_exact, duration, start_time, codec, pixel_format, "
     "has_audio, bit_rate, stream} -- what the container and stream say"},
    {"read", l_read, VLUA_FUNC,
     "vl.video.read(path, {start = 1 | start_time = s, frames, step = 1, size = {h, w}, resize = \"bilinear\", "
     "format = \"THWC\"|\"TCHW\", pixel_format = \"rgb24\"|\"yuv444p\"}) -> uint8 frames, info -- "
     "decodes only the frames asked for (seek, then stream)"},
    {"frames", l_frames, VLUA_FUNC,
     "for clip, first in vl.video.frames(path, {clip = 16, stride = clip*step, step, start, frames, size, format}) "
     "-- streams clips; the decoder is closed when the loop ends or is left"},
    {"write", l_write, VLUA_FUNC,
     "vl.video.write(path, frames, {fps = 25, codec = \"h264\"|\"mpeg4\"|\"rawvideo\", crf = 18, qscale = 3, "
     "bitrate, gop, preset, format = \"THWC\"|\"TCHW\", pixel_format}) -- atomic; .mp4/.mkv/.avi/.mov or .y4m"},
    {NULL, NULL, 0, NULL}};

static const vlua_Reg image_regs[] = {
    {"read", l_image_read, VLUA_FUNC,
     "vl.image.read(path, {format = \"HWC\"|\"CHW\", gray = false}) -> uint8 image -- PNG, JPEG, PPM/PGM"},
    {"write", l_image_write, VLUA_FUNC,
     "vl.image.write(path, img, {format = \"HWC\"|\"CHW\", quality = 95}) -- .png, .jpg, .ppm, .pgm; atomic"},
    {NULL, NULL, 0, NULL}};

void vlua_open_media(lua_State *L) {
  if (luaL_newmetatable(L, CLIPS_MT)) {
    static const luaL_Reg mt[] = {{"__gc", clips_close}, {"__close", clips_close}, {"__tostring", clips_tostring},
                                  {NULL, NULL}};
    luaL_setfuncs(L, mt, 0);
  }
  lua_pop(L, 1);
  vlua_register_in(L, "video", video_regs);
  vlua_register_in(L, "image", image_regs);
}
