/* console: the operators' console's files, served by `hearth run` on its own listener:
 * the page and its script and style, embedded in the binary at build time
 * (cmake/embed_assets.cmake over engine/console/), and Chart.js, read from Debian's
 * libjs-chart.js package at run time (so the distribution's security updates reach it and
 * no copy of it lives in this repository). The files hold no data: the page asks for the
 * token and reads everything through the JSON API. */
#ifndef HEARTH_CONSOLE_H
#define HEARTH_CONSOLE_H

#include <stddef.h>

#include "http_server.h"

/* Where Debian's libjs-chart.js puts its UMD build. */
#define CONSOLE_CHART_JS "/usr/share/javascript/chart.js/chart.min.js"

typedef struct {
  const char *name;
  const unsigned char *data;
  size_t len;
} console_asset_t;

/* The embedded files, ending with a {NULL} entry. */
extern const console_asset_t console_assets[];

/* 1 when `path` is one of the console's (/, /ui/NAME) and res holds the answer (the file,
 * 404, or 405 for a method other than GET); 0 when the path is not the console's. */
int console_serve(const char *method, const char *path, http_response_t *res);

#endif
