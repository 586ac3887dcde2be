/* server/admin_console.c - see admin_console.h. Replies are protobuf
 * messages from recd's own handlers turned into JSON by one walk over
 * their descriptors, so the page sees the field names docs/api.md
 * documents. cJSON escapes every string; '<', '>' and '&' are escaped on
 * top, so no reply read as HTML could open a tag. */
#include "server/admin_console.h"
#include "common/clock.h"
#include "server/console_assets.h"
#include "server/convert.h"
#include "server/handlers.h"
#include "rec/v1/admin.pb-c.h"
#include "retrieval/retrieve.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A look-up that takes longer than this is cut short (the deadline
 * policy first makes it cheaper, as for any caller). */
#define LOOKUP_MS 5000

/* ---- the page ---- */

static const struct { const char *path, *asset, *type; } FILES[] = {
    {"/console", "index.html", "text/html; charset=utf-8"},
    {"/console/console.js", "console.js", "text/javascript; charset=utf-8"},
    {"/console/console.css", "console.css", "text/css; charset=utf-8"},
};
enum { N_FILES = sizeof FILES / sizeof FILES[0] };

bool console_file_find(const char *path, console_file *out) {
  for (size_t i = 0; i < N_FILES; i++) {
    if (strcmp(path, FILES[i].path) != 0) continue;
    for (size_t a = 0; a < console_asset_count; a++)
      if (strcmp(console_assets[a].name, FILES[i].asset) == 0) {
        *out = (console_file){FILES[i].path, FILES[i].type, console_assets[a].data, console_assets[a].len};
        return true;
      }
  }
  return false;
}

/* ---- parameters ---- */

static const struct { const char *path; console_route route; } ROUTES[] = {
    {"/api/bundle", CONSOLE_BUNDLE}, {"/api/experiments", CONSOLE_EXPERIMENTS},
    {"/api/recommend", CONSOLE_RECOMMEND}, {"/api/similar", CONSOLE_SIMILAR}};

bool console_is_api(const char *path) { return strncmp(path, "/api/", 5) == 0; }

static int fail(console_reply *r, int status, const char *msg) {
  cJSON *j = cJSON_CreateObject();
  if (j) cJSON_AddStringToObject(j, "error", msg);
  r->status = status;
  r->body = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  return status;
}

static int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes the 'n' bytes at 's' ('+' is a space, %XX a byte) into 'out'
 * (cap bytes with the NUL). False when a '%' is not followed by two hex
 * digits, the result holds a NUL, or it does not fit. */
static bool decode(const char *s, size_t n, char *out, size_t cap, size_t *len) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '+') c = ' ';
    else if (c == '%') {
      if (i + 2 >= n || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0) return false;
      c = hex(s[i + 1]) * 16 + hex(s[i + 2]);
      i += 2;
    }
    if (c == 0 || w + 1 >= cap) return false;
    out[w++] = (char)c;
  }
  out[w] = '\0';
  *len = w;
  return true;
}

/* UTF-8 (no overlong forms, no surrogates) without control characters. */
static bool clean_text(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    if (c < 0x20 || c == 0x7f) return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!len || i + len > n) return false;
    uint32_t cp = c & (0xff >> (len + 1));
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0x80 && cp < 0xa0))
      return false;
    i += len;
  }
  return true;
}

/* One "name=value" pair of the query into q. */
static int parse_pair(const char *name, size_t nlen, const char *val, size_t vlen, int max_k, console_query *q,
                      bool *seen_user, bool *seen_k, console_reply *r) {
  char buf[REC_ID_MAX + 1];
  size_t len;
  bool lookup = q->route == CONSOLE_RECOMMEND || q->route == CONSOLE_SIMILAR;
  bool user = nlen == 4 && memcmp(name, "user", 4) == 0, k = lookup && nlen == 1 && name[0] == 'k';
  bool ids = (q->route == CONSOLE_RECOMMEND && nlen == 3 && memcmp(name, "why", 3) == 0) ||
             (q->route == CONSOLE_SIMILAR && nlen == 4 && memcmp(name, "item", 4) == 0);
  if (user && q->route != CONSOLE_RECOMMEND) user = false;
  if (!user && !k && !ids) return fail(r, 400, "unknown parameter: this route takes user, k and why (recommend) "
                                               "or item and k (similar)");
  if ((user && *seen_user) || (k && *seen_k)) return fail(r, 400, "user and k may each be given once");
  if (k) {
    *seen_k = true;
    long v = 0;
    if (vlen == 0 || vlen > 6) return fail(r, 400, "k must be an integer from 1 to max_k");
    for (size_t i = 0; i < vlen; i++) {
      if (val[i] < '0' || val[i] > '9') return fail(r, 400, "k must be an integer from 1 to max_k");
      v = v * 10 + (val[i] - '0');
    }
    if (v < 1 || v > max_k) return fail(r, 400, "k must be an integer from 1 to max_k");
    q->k = (int)v;
    return 0;
  }
  if (ids && q->n_ids == CONSOLE_MAX_IDS) return fail(r, 400, "at most 8 why= or item= values");
  if (!decode(val, vlen, buf, sizeof buf, &len) || len == 0 || !clean_text((const unsigned char *)buf, len))
    return fail(r, 400, user ? "user must be 1 to 128 bytes of UTF-8 without control characters, percent-encoded"
                             : "each id must be 1 to 128 bytes of UTF-8 without control characters, percent-encoded");
  if (user) {
    *seen_user = true;
    memcpy(q->user, buf, len + 1);
  } else {
    memcpy(q->ids[q->n_ids++], buf, len + 1);
  }
  return 0;
}

int console_parse(const char *path, const char *query, int max_k, console_query *q, console_reply *r) {
  memset(q, 0, sizeof *q);
  q->k = CONSOLE_DEFAULT_K < max_k ? CONSOLE_DEFAULT_K : max_k;
  size_t i = 0;
  while (i < sizeof ROUTES / sizeof ROUTES[0] && strcmp(path, ROUTES[i].path) != 0) i++;
  if (i == sizeof ROUTES / sizeof ROUTES[0])
    return fail(r, 404, "no such route: try /api/bundle, /api/experiments, /api/recommend or /api/similar");
  q->route = ROUTES[i].route;
  bool seen_user = false, seen_k = false;
  for (const char *p = query; p && *p;) {
    const char *end = p + strcspn(p, "&"), *eq = memchr(p, '=', (size_t)(end - p));
    if (end > p) {
      if (!eq) return fail(r, 400, "each parameter must be name=value");
      int rc = parse_pair(p, (size_t)(eq - p), eq + 1, (size_t)(end - eq - 1), max_k, q, &seen_user, &seen_k, r);
      if (rc) return rc;
    }
    p = *end ? end + 1 : end;
  }
  if (q->route == CONSOLE_RECOMMEND && !seen_user) return fail(r, 400, "user is required");
  if (q->route == CONSOLE_SIMILAR && !q->n_ids) return fail(r, 400, "item is required");
  return 0;
}

/* ---- protobuf to JSON ---- */

static size_t elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE: return 8;
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
  case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  default: return 4;
  }
}

static cJSON *message_json(const ProtobufCMessage *m);

/* A float as the shortest decimal of its 7 significant digits (0.4, not
 * the 0.40000000596046448 its double would print). */
static cJSON *float_json(float f) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.7g", f);
  return cJSON_CreateNumber(strtod(buf, NULL));
}

/* One value of field 'f' at 'p'. Bytes fields are left out (null): no
 * message the console reads has one. */
static cJSON *value_json(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    return cJSON_CreateNumber(*(const int32_t *)p);
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: return cJSON_CreateNumber(*(const uint32_t *)p);
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    return cJSON_CreateNumber((double)*(const int64_t *)p);
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: return cJSON_CreateNumber((double)*(const uint64_t *)p);
  case PROTOBUF_C_TYPE_FLOAT: return float_json(*(const float *)p);
  case PROTOBUF_C_TYPE_DOUBLE: return cJSON_CreateNumber(*(const double *)p);
  case PROTOBUF_C_TYPE_BOOL: return cJSON_CreateBool(*(const protobuf_c_boolean *)p);
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
    return v ? cJSON_CreateString(v->name) : cJSON_CreateNumber(*(const int *)p);
  }
  case PROTOBUF_C_TYPE_STRING: return cJSON_CreateString(*(char *const *)p ? *(char *const *)p : "");
  case PROTOBUF_C_TYPE_MESSAGE: return *(void *const *)p ? message_json(*(const ProtobufCMessage *const *)p) : cJSON_CreateNull();
  default: return cJSON_CreateNull();
  }
}

/* Every field of 'm' under its proto name; NULL when memory ran out. */
static cJSON *message_json(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  cJSON *o = cJSON_CreateObject();
  for (unsigned i = 0; o && i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *base = (const char *)m + f->offset;
    cJSON *v;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
      const char *arr = *(char *const *)base;
      v = cJSON_CreateArray();
      for (size_t k = 0; v && k < n; k++) {
        cJSON *e = value_json(f, arr + k * elem_size(f->type));
        if (!e || !cJSON_AddItemToArray(v, e)) {
          cJSON_Delete(e);
          cJSON_Delete(v);
          v = NULL;
        }
      }
    } else {
      v = value_json(f, base);
    }
    if (!v || !cJSON_AddItemToObject(o, f->name, v)) {
      cJSON_Delete(v);
      cJSON_Delete(o);
      o = NULL;
    }
  }
  return o;
}

/* The printed JSON with '<', '>' and '&' as \u escapes: they occur only
 * inside strings, where the escape means the same character. */
static char *print_safe(const cJSON *j) {
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  if (!s) return NULL;
  size_t n = 0, len = strlen(s);
  for (size_t i = 0; i < len; i++) n += s[i] == '<' || s[i] == '>' || s[i] == '&';
  if (!n) return s;
  char *out = malloc(len + 5 * n + 1), *w = out;
  for (size_t i = 0; out && i <= len; i++) {
    if (s[i] == '<' || s[i] == '>' || s[i] == '&') w += sprintf(w, "\\u%04x", (unsigned)s[i]);
    else *w++ = s[i];
  }
  free(s);
  return out;
}

/* ---- the routes ---- */

/* rec error codes as HTTP statuses: one table. */
static int http_status(int rc) {
  switch (rc) {
  case REC_EINVAL: return 400;
  case REC_ENOTFOUND: return 404;
  case REC_EUNAVAIL: case REC_EOVERLOAD: case REC_EDEADLINE: return 503;
  case REC_ENOMEM: case REC_ETOOBIG: return 507;
  case REC_EUNIMPL: case REC_EPRECOND: return 501;
  default: return 500;
  }
}

static void add_setting(void *arg, const char *key, const char *value) {
  cJSON *o = cJSON_CreateObject();
  if (o && cJSON_AddStringToObject(o, "key", key) && cJSON_AddStringToObject(o, "value", value) &&
      cJSON_AddItemToArray(arg, o))
    return;
  cJSON_Delete(o);
}

static cJSON *bundle_json(app *ap, rpc_server *srv) {
  cJSON *j = cJSON_CreateObject(), *s = cJSON_CreateArray();
  bundle *b = app_acquire(ap);
  app_ranking *r = app_acquire_ranking(ap);
  const recd_config *cfg = ap->cfg;
  if (!j || !s || !cJSON_AddItemToObject(j, "settings", s)) {
    cJSON_Delete(s);
    s = NULL;
  }
  cJSON_AddBoolToObject(j, "serving", srv && rpc_server_serving(srv));
  cJSON_AddStringToObject(j, "recd_version", RECD_VERSION);
  cJSON_AddStringToObject(j, "role", rec_role_name(cfg->role));
  cJSON_AddNumberToObject(j, "max_k", cfg->max_k);
  cJSON_AddNumberToObject(j, "uptime_seconds", (double)((rec_mono_ns() - ap->started_ns) / 1000000000));
  cJSON_AddStringToObject(j, "ranking_config", cfg->ranking_config[0] ? cfg->ranking_config : "(defaults)");
  cJSON_AddStringToObject(j, "experiments", cfg->experiments);
  cJSON_AddStringToObject(j, "bundle_version", b ? b->version : "");
  cJSON_AddStringToObject(j, "bundle_path", b ? b->path : "");
  cJSON_AddNumberToObject(j, "items", b ? (double)b->catalog->count : 0);
  cJSON_AddNumberToObject(j, "items_added_live", b ? (double)bundle_added(b) : 0);
  cJSON_AddNumberToObject(j, "users", b ? (double)b->user_count : 0);
  cJSON_AddNumberToObject(j, "dim", b ? (double)b->dim : 0);
  cJSON_AddStringToObject(j, "index_type", b ? b->index_type : "");
  cJSON_AddBoolToObject(j, "item_tower", b && b->item_tower);
  cJSON_AddBoolToObject(j, "ease", b && b->sig.ease.off);
  cJSON_AddNumberToObject(j, "catalog_generation", b ? (double)b->catalog->generation : 0);
  if (r && s) rank_config_each(r->cfg, add_setting, s);
  app_ranking_unref(r);
  bundle_unref(b);
  return j;
}

/* Each source's weight in the blend of the settings 'user''s arms give
 * (the page splits an item's blended score by weight x normalised score). */
static cJSON *weights_json(app *ap, const char *user) {
  app_ranking *r = app_acquire_ranking(ap);
  cJSON *w = cJSON_CreateObject();
  if (r && w) {
    const rank_config *cfg = r->cfg;
    exp_assignment as;
    if (r->plan) {
      exp_assign(r->plan, user, strlen(user), NULL, 0, &as);
      cfg = as.cfg;
    }
    for (int s = 0; s < REC_SRC_COUNT; s++) {
      const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&rec__v1__source__descriptor,
                                                                          conv_source((rec_source)s));
      if (v) cJSON_AddNumberToObject(w, v->name, cfg->weight[s]);
    }
  }
  app_ranking_unref(r);
  return w;
}

/* Runs handler 'm' on 'in' in process, quietly; *out is JSON of its reply,
 * or of its error with *status set. */
static cJSON *call(app *ap, arena *a, const rpc_method *m, const ProtobufCMessage *in, int *status) {
  rpc_ctx ctx;
  rpc_local_begin(&ctx, a, ap, rec_mono_ns() + (int64_t)LOOKUP_MS * 1000000);
  ctx.quiet = true;
  const ProtobufCMessage *out = NULL;
  int rc = rpc_local_call(&ctx, m, in, &out);
  cJSON *j;
  if (rc == 0) {
    j = message_json(out);
    *status = 200;
  } else {
    /* The handler's message may quote an id the caller sent: it goes out as
     * a JSON string, escaped like every other. */
    j = cJSON_CreateObject();
    if (j) cJSON_AddStringToObject(j, "error", ctx.err.msg[0] ? ctx.err.msg : rec_strerror(rc));
    *status = http_status(rc);
  }
  rpc_local_end(&ctx);
  return j;
}

static cJSON *recommend_json(app *ap, arena *a, const console_query *q, int *status) {
  char *why[CONSOLE_MAX_IDS];
  for (size_t i = 0; i < q->n_ids; i++) why[i] = (char *)q->ids[i];
  Rec__V1__RecommendRequest rq = REC__V1__RECOMMEND_REQUEST__INIT;
  rq.user_id = (char *)q->user;
  rq.k = q->k;
  rq.explain = true;
  rq.explain_item_ids = why;
  rq.n_explain_item_ids = q->n_ids;
  rq.request_id = "console";
  cJSON *j = call(ap, a, &h_recommend, &rq.base, status);
  if (j && *status == 200) {
    cJSON *w = weights_json(ap, q->user);
    if (!w || !cJSON_AddItemToObject(j, "blend_weights", w)) cJSON_Delete(w);
  }
  return j;
}

static cJSON *similar_json(app *ap, arena *a, const console_query *q, int *status) {
  char *ids[CONSOLE_MAX_IDS];
  for (size_t i = 0; i < q->n_ids; i++) ids[i] = (char *)q->ids[i];
  Rec__V1__SimilarItemsRequest rq = REC__V1__SIMILAR_ITEMS_REQUEST__INIT;
  rq.item_ids = ids;
  rq.n_item_ids = q->n_ids;
  rq.k = q->k;
  rq.request_id = "console";
  return call(ap, a, &h_similar_items, &rq.base, status);
}

void console_run(app *ap, rpc_server *srv, const console_query *q, console_reply *reply) {
  /* The ranking tier's look-ups ride on its serving workers' completion
   * queues to reach the shards (rpc_fanout.h): in process there is none. */
  bool ranking = q->route == CONSOLE_RECOMMEND || q->route == CONSOLE_SIMILAR;
  if (ranking && ap->cfg->role != REC_ROLE_ALL) {
    fail(reply, 501, "look-ups run the ranking pipeline in process, which only role=all holds; "
                     "ask the ranking tier with recctl recommend");
    return;
  }
  retrieve_thread_init(); /* a libuv worker: one BLAS thread, as on the serving workers */
  arena a;
  arena_init(&a, 0);
  arena_set_limit(&a, (size_t)(ap->cfg->max_call_mb > 0 ? ap->cfg->max_call_mb : 256) << 20);
  int status = 200;
  cJSON *j = NULL;
  switch (q->route) {
  case CONSOLE_BUNDLE: j = bundle_json(ap, srv); break;
  case CONSOLE_EXPERIMENTS: {
    Rec__V1__ExperimentsRequest rq = REC__V1__EXPERIMENTS_REQUEST__INIT;
    j = call(ap, &a, &h_experiments, &rq.base, &status);
    break;
  }
  case CONSOLE_RECOMMEND: j = recommend_json(ap, &a, q, &status); break;
  case CONSOLE_SIMILAR: j = similar_json(ap, &a, q, &status); break;
  }
  reply->status = status;
  reply->body = print_safe(j);
  cJSON_Delete(j);
  arena_destroy(&a);
}
