/* test_versions: unit tests for the script-versions section of engine/store.c — a load
 * noted twice keeps its first load and moves its last, the set loaded last is the latest
 * noted (not the newest hash), a definition is kept once under its hash, the runs in
 * flight are the members whose attribute is a table with active = true — and for the
 * set's hash (lua_host's manifest): the same files give the same version, a changed byte
 * another. Temp files live in /tmp and are removed. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua_host.h"
#include "store.h"
#include "unit.h"
#include "unit_db.h"

static void temp_path(char path[64], const char *what) {
  char name[32];
  snprintf(name, sizeof name, "versions-%s", what);
  unit_temp_db(path, name);
}

static void remove_db(const char *path) { unit_remove_db(path); }

static int collect(void *ud, const char *member, const char *state) {
  (void)state;
  strcat(ud, member);
  strcat(ud, " ");
  return 0;
}

TEST(script_versions_first_and_last_load) {
  char path[64], err[256] = "";
  temp_path(path, "db");
  store_t *s = store_open(path, 0, err, sizeof err);
  CHECK(s != NULL);
  if (!s) { remove_db(path); return; }
  script_version_t v;
  CHECK_INT(store_script_version_latest(s, &v), 0);
  CHECK_INT(store_script_version_note(s, "bbbb", 100, "[]"), 0);
  CHECK_INT(store_script_version_note(s, "aaaa", 200, "[]"), 0);
  CHECK_INT(store_script_version_latest(s, &v), 1);
  CHECK_STR(v.hash, "aaaa");
  CHECK_INT(v.versions, 2);
  /* back to the first set: it is the latest again, its first load kept */
  CHECK_INT(store_script_version_note(s, "bbbb", 300, "[]"), 0);
  CHECK_INT(store_script_version_latest(s, &v), 1);
  CHECK_STR(v.hash, "bbbb");
  CHECK_INT(v.loaded_at, 100);
  CHECK_INT(v.last_loaded_at, 300);
  CHECK_INT(v.versions, 2);
  store_close(s);
  remove_db(path);
}

TEST(definitions_kept_once_and_runs_in_flight) {
  char path[64], err[256] = "";
  temp_path(path, "db");
  store_t *s = store_open(path, 0, err, sizeof err);
  CHECK(s != NULL);
  if (!s) { remove_db(path); return; }
  CHECK_INT(store_definition_note(s, "journey", "onb", "h1", "1", "{first}", "set1", 10), 0);
  CHECK_INT(store_definition_note(s, "journey", "onb", "h1", "1", "{second}", "set2", 20), 0);
  char *body = NULL, *label = NULL;
  CHECK_INT(store_definition_get(s, "journey", "onb", "h1", &body, &label), 1);
  CHECK_STR(body, "{first}");
  CHECK_STR(label, "1");
  free(body);
  free(label);
  CHECK_INT(store_definition_get(s, "journey", "onb", "h2", &body, &label), 0);
  CHECK(body == NULL && label == NULL);
  member_row_t rows[] = {
      {.id = "m-1", .attrs = "{\"_journey.onb\":{\"active\":true,\"version\":\"h1\"}}"},
      {.id = "m-2", .attrs = "{\"_journey.onb\":{\"active\":false}}"},
      {.id = "m-3", .attrs = "{\"other\":1}"},
      {.id = "m-4", .attrs = "{\"_journey.onb\":{\"active\":true}}"},
  };
  CHECK_INT(store_begin(s), 0);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) CHECK_INT(store_member_put(s, &rows[i]), 0);
  CHECK_INT(store_commit(s), 0);
  char seen[64] = "";
  CHECK_INT(store_runs_in_flight(s, "_journey.onb", collect, seen), 2);
  CHECK_STR(seen, "m-1 m-4 ");
  store_close(s);
  remove_db(path);
}

static void set_version(const char *dir, const char *src, char out[65]) {
  char file[128];
  snprintf(file, sizeof file, "%s/a.lua", dir);
  FILE *f = fopen(file, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs(src, f);
  fclose(f);
  luahost_t *h = luahost_new(NULL, NULL, dir, NULL, NULL);
  CHECK(h != NULL);
  if (!h) return;
  strbuf_t errors;
  sb_init(&errors);
  CHECK_INT(luahost_load_scripts(h, dir, &errors), 0);
  sb_free(&errors);
  luahost_version(h, out);
  luahost_free(h);
  unlink(file);
}

TEST(set_version_follows_the_bytes) {
  char dir[] = "/tmp/hearth-test-versions-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char a[65] = "", b[65] = "", c[65] = "";
  set_version(dir, "local x = 1\n", a);
  set_version(dir, "local x = 1\n", b);
  set_version(dir, "local x = 2\n", c);
  CHECK_INT(strlen(a), 64);
  CHECK_STR(a, b);
  CHECK(strcmp(a, c) != 0);
  rmdir(dir);
}

int main(void) {
  RUN(script_versions_first_and_last_load);
  RUN(definitions_kept_once_and_runs_in_flight);
  RUN(set_version_follows_the_bytes);
  return UNIT_DONE();
}
