/* console: serving the console's files (see console.h). */
#include "console.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static const char *type_of(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot) return "application/octet-stream";
  if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
  if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
  if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
  if (!strcmp(dot, ".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

static void answer(http_response_t *res, int status, const char *type, const void *data, size_t len) {
  res->status = status;
  res->content_type = type;
  res->body = xmalloc(len + 1);
  memcpy(res->body, data, len);
  res->body[len] = 0;
  res->body_len = len;
  snprintf(res->extra_headers, sizeof res->extra_headers, "Cache-Control: no-cache\r\n");
}

static void not_found(http_response_t *res, const char *what) {
  char msg[200];
  int n = snprintf(msg, sizeof msg, "{\"error\":\"%s\"}", what);
  answer(res, 404, "application/json", msg, (size_t)n);
}

/* Chart.js from the package, read once and kept. */
static int serve_chart_js(http_response_t *res) {
  static char *text;
  static size_t len;
  if (!text) {
    FILE *f = fopen(CONSOLE_CHART_JS, "rb");
    if (!f) {
      log_msg(LOG_WARN, "console: Chart.js is not installed; the charts are left out (apt-get install libjs-chart.js)",
              "path", CONSOLE_CHART_JS, NULL);
      not_found(res, "Chart.js is not installed (" CONSOLE_CHART_JS ", Debian package libjs-chart.js)");
      return 1;
    }
    size_t cap = 1 << 16, n = 0, got;
    char *buf = xmalloc(cap);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
      n += got;
      if (n == cap) buf = xrealloc(buf, cap *= 2);
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
      free(buf);
      log_msg(LOG_ERROR, "console: cannot read Chart.js", "path", CONSOLE_CHART_JS, NULL);
      not_found(res, "Chart.js could not be read");
      return 1;
    }
    text = buf;
    len = n;
  }
  answer(res, 200, "text/javascript; charset=utf-8", text, len);
  return 1;
}

int console_serve(const char *method, const char *path, http_response_t *res) {
  const char *name;
  if (!strcmp(path, "/") || !strcmp(path, "/ui") || !strcmp(path, "/ui/"))
    name = "index.html";
  else if (!strncmp(path, "/ui/", 4))
    name = path + 4;
  else
    return 0;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    static const char msg[] = "{\"error\":\"use GET\"}";
    answer(res, 405, "application/json", msg, sizeof msg - 1);
    return 1;
  }
  if (!strcmp(name, "chart.js")) return serve_chart_js(res);
  for (const console_asset_t *a = console_assets; a->name; a++)
    if (!strcmp(a->name, name)) {
      answer(res, 200, type_of(a->name), a->data, a->len);
      return 1;
    }
  not_found(res, "no such console file");
  return 1;
}
