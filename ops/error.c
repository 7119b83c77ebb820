/*
** error.c — per-thread error state of the core (prefix vl_error).
**
** Ops never print, abort or exit: they record a message here and return a
** status; vm/ turns it into a Lua error, a C host reads vl_last_error().
*/
#include <stdarg.h>
#include <stdio.h>

#include "vl.h"

static _Thread_local char error_message[VL_ERROR_MAX];
static _Thread_local vl_status error_status = VL_OK;

int vl_error(vl_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(error_message, sizeof error_message, fmt, ap);
  va_end(ap);
  error_status = code;
  return code;
}

const char *vl_last_error(void) { return error_message; }

int vl_last_status(void) { return (int)error_status; }

void vl_clear_error(void) {
  error_message[0] = '\0';
  error_status = VL_OK;
}
