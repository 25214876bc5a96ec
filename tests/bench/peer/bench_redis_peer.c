/* bench_redis_peer: the Redis + Lua peer of the side-by-side benchmark (run_peer.sh). A
 * small hiredis client that reads the same NDJSON event file as `hearth import` (parsed
 * with jansson, local day from the engine's timeutil.c, see peer_events.c) and runs
 * streak_redis.lua once per event with EVALSHA, N calls pipelined per round trip (N is
 * Hearth's --batch). Durability is the server's: run_peer.sh starts redis-server with
 * appendonly yes + appendfsync always, so a reply means the write is in the fsynced AOF.
 * Our own code; the technique (pipelined EVALSHA) is the one Redis documents.
 *
 *   bench_redis_peer run EVENTS SOCKET SCRIPT BATCH   apply the events, print counts
 *   bench_redis_peer dump SOCKET                      one line per member on stdout:
 *                                                     "id points streak last_checkin_day"
 *                                                     ("-" when unset), unsorted */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_events.h"

#define ARGS 12   /* EVALSHA sha 3 member ledger outbox type id member time day amount */
#define FIELD 128 /* room for one formatted argument */

static int usage(void) {
  fprintf(stderr, "usage: bench_redis_peer run EVENTS SOCKET SCRIPT BATCH\n"
                  "       bench_redis_peer dump SOCKET\n");
  return 2;
}

static redisContext *connect_to(const char *socket_path) {
  redisContext *c = redisConnectUnix(socket_path);
  if (!c || c->err) {
    fprintf(stderr, "bench_redis_peer: connect %s: %s\n", socket_path, c ? c->errstr : "out of memory");
    if (c) redisFree(c);
    return NULL;
  }
  return c;
}

/* The script's text, malloc'd, or NULL (message on stderr). */
static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return NULL;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0, n;
  do {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *grown = realloc(buf, cap);
      if (!grown) {
        free(buf);
        fclose(f);
        fprintf(stderr, "bench_redis_peer: out of memory\n");
        return NULL;
      }
      buf = grown;
    }
    n = fread(buf + len, 1, 4096, f);
    len += n;
  } while (n > 0);
  int failed = ferror(f);
  fclose(f);
  if (failed) {
    perror(path);
    free(buf);
    return NULL;
  }
  buf[len] = '\0';
  return buf;
}

/* SCRIPT LOAD: the script's sha1 into sha (41 bytes). 0 ok, -1 (message on stderr). */
static int load_script(redisContext *c, const char *path, char sha[41]) {
  char *text = read_file(path);
  if (!text) return -1;
  redisReply *r = redisCommand(c, "SCRIPT LOAD %s", text);
  free(text);
  if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
    fprintf(stderr, "bench_redis_peer: SCRIPT LOAD failed: %s\n",
            r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
    if (r) freeReplyObject(r);
    return -1;
  }
  memcpy(sha, r->str, 41);
  freeReplyObject(r);
  return 0;
}

/* Queue one EVALSHA for ev (hiredis copies the arguments into its output buffer). */
static int append_event(redisContext *c, const char *sha, const peer_event_t *ev) {
  char member_key[FIELD], ledger_key[FIELD], t[32], day[32], amount[40];
  snprintf(member_key, sizeof member_key, "m:%s", ev->member);
  snprintf(ledger_key, sizeof ledger_key, "l:%s", ev->member);
  snprintf(t, sizeof t, "%lld", (long long)ev->time);
  snprintf(day, sizeof day, "%lld", (long long)ev->day);
  snprintf(amount, sizeof amount, "%.17g", ev->amount);
  const char *argv[ARGS] = {"EVALSHA", sha, "3", member_key, ledger_key, "outbox",
                            ev->type, ev->id, ev->member, t, day, amount};
  size_t lens[ARGS];
  for (int i = 0; i < ARGS; i++) lens[i] = strlen(argv[i]);
  if (redisAppendCommandArgv(c, ARGS, argv, lens) != REDIS_OK) {
    fprintf(stderr, "bench_redis_peer: %s\n", c->errstr);
    return -1;
  }
  return 0;
}

/* Read the replies of n queued calls; their action counts are added to *actions. */
static int read_replies(redisContext *c, int n, long long *actions) {
  int failed = 0;
  for (int i = 0; i < n; i++) {
    void *p = NULL;
    if (redisGetReply(c, &p) != REDIS_OK) {
      fprintf(stderr, "bench_redis_peer: %s\n", c->errstr);
      return -1;
    }
    redisReply *r = p;
    if (r->type == REDIS_REPLY_INTEGER) {
      *actions += r->integer;
    } else {
      if (!failed) fprintf(stderr, "bench_redis_peer: script failed: %s\n",
                           r->type == REDIS_REPLY_ERROR ? r->str : "(not an integer)");
      failed = 1;
    }
    freeReplyObject(r);
  }
  return failed ? -1 : 0;
}

static int run(const char *events, const char *socket_path, const char *script, int batch) {
  peer_reader_t rd;
  peer_event_t ev;
  char sha[41];
  long long nevents = 0, actions = 0;
  int rc = 0, got, queued = 0;
  redisContext *c = connect_to(socket_path);
  if (!c) return 1;
  if (load_script(c, script, sha) < 0 || peer_reader_open(&rd, events, "Asia/Shanghai") < 0) {
    redisFree(c);
    return 1;
  }
  while ((got = peer_reader_next(&rd, &ev)) > 0) {
    if (append_event(c, sha, &ev) < 0) break;
    nevents++;
    if (++queued == batch) {
      if (read_replies(c, queued, &actions) < 0) break;
      queued = 0;
    }
  }
  if (got != 0 || (queued && read_replies(c, queued, &actions) < 0)) rc = 1;
  peer_reader_close(&rd);
  redisFree(c);
  printf("redis peer: %lld events, %lld actions, batch %d%s\n", nevents, actions, batch,
         rc ? " (FAILED)" : "");
  return rc;
}

/* The reply's element i as text, "-" when nil. */
static const char *element_text(const redisReply *r, size_t i) {
  if (r->type != REDIS_REPLY_ARRAY || i >= r->elements) return "-";
  const redisReply *e = r->element[i];
  return e->type == REDIS_REPLY_STRING ? e->str : "-";
}

/* One page of SCAN: print each member's line. The next cursor into cursor (32 bytes). */
static int dump_page(redisContext *c, char cursor[32]) {
  redisReply *page = redisCommand(c, "SCAN %s MATCH m:* COUNT 1000", cursor);
  if (!page || page->type != REDIS_REPLY_ARRAY || page->elements != 2) {
    fprintf(stderr, "bench_redis_peer: SCAN failed: %s\n", page ? "unexpected reply" : c->errstr);
    if (page) freeReplyObject(page);
    return -1;
  }
  snprintf(cursor, 32, "%s", page->element[0]->str);
  redisReply *keys = page->element[1];
  for (size_t i = 0; i < keys->elements; i++)
    redisAppendCommand(c, "HMGET %s points streak last_checkin_day", keys->element[i]->str);
  int rc = 0;
  for (size_t i = 0; i < keys->elements; i++) {
    void *p = NULL;
    if (redisGetReply(c, &p) != REDIS_OK) {
      fprintf(stderr, "bench_redis_peer: %s\n", c->errstr);
      rc = -1;
      break;
    }
    redisReply *r = p;
    printf("%s %s %s %s\n", keys->element[i]->str + 2, element_text(r, 0), element_text(r, 1),
           element_text(r, 2));
    freeReplyObject(r);
  }
  freeReplyObject(page);
  return rc;
}

static int dump(const char *socket_path) {
  char cursor[32] = "0";
  redisContext *c = connect_to(socket_path);
  if (!c) return 1;
  int rc = 0;
  do {
    if (dump_page(c, cursor) < 0) {
      rc = 1;
      break;
    }
  } while (strcmp(cursor, "0") != 0);
  redisFree(c);
  if (fflush(stdout) != 0) rc = 1;
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "run")) {
    int batch = atoi(argv[5]);
    if (batch < 1) return usage();
    return run(argv[2], argv[3], argv[4], batch);
  }
  if (argc == 3 && !strcmp(argv[1], "dump")) return dump(argv[2]);
  return usage();
}
