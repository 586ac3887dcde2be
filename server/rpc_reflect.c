/* server/rpc_reflect.c - server reflection's answers (grpc.reflection.v1 and
 * v1alpha share them): the descriptor set protoc made at build time
 * (rec_descriptor_set) indexed once per process by file name and by every
 * symbol it declares, and the answer to one request. The gRPC stream that
 * carries requests and answers is rpc_reflect_stream.c. */
#include "server/rpc_internal.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "internal/descriptor_subset.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

extern const uint8_t rec_descriptor_set[];
extern const size_t rec_descriptor_set_len;

typedef Recd__Internal__FileDescriptorProto file_proto;
typedef Recd__Internal__DescriptorProto msg_proto;
typedef Recd__Internal__EnumDescriptorProto enum_proto;

typedef struct refl_file {
  const char *name;
  ProtobufCBinaryData bytes; /* the serialized FileDescriptorProto, served as is */
  size_t *deps;              /* indexes of the files it imports */
  size_t n_deps;
} refl_file;

typedef struct refl_sym {
  char *name;                /* fully qualified, without a leading dot */
  size_t file;
} refl_sym;

/* Built once (pthread_once), read-only afterwards: any thread may read it. */
static struct {
  int rc;                    /* 0, or why the set could not be indexed */
  Recd__Internal__FileDescriptorSet *set;
  file_proto **protos;
  refl_file *files;
  size_t n_files;
  refl_sym *syms;
  size_t n_syms, cap_syms;
} db;
static pthread_once_t db_once = PTHREAD_ONCE_INIT;

static int add_sym(const char *scope, const char *name, size_t file) {
  if (db.n_syms == db.cap_syms) {
    size_t cap = db.cap_syms ? db.cap_syms * 2 : 256;
    refl_sym *s = realloc(db.syms, cap * sizeof *s);
    if (!s) return REC_ENOMEM;
    db.syms = s;
    db.cap_syms = cap;
  }
  size_t n = strlen(scope) + strlen(name) + 2;
  char *full = malloc(n);
  if (!full) return REC_ENOMEM;
  snprintf(full, n, "%s%s%s", scope, *scope ? "." : "", name);
  db.syms[db.n_syms++] = (refl_sym){full, file};
  return 0;
}

/* An enum's values live in the enum's enclosing scope, as in protobuf. */
static int add_enum(const char *scope, const enum_proto *e, size_t file) {
  int rc = add_sym(scope, e->name, file);
  for (size_t i = 0; !rc && i < e->n_value; i++) rc = add_sym(scope, e->value[i]->name, file);
  return rc;
}

static int add_message(const char *scope, const msg_proto *m, size_t file) {
  int rc = add_sym(scope, m->name, file);
  if (rc) return rc;
  const char *self = db.syms[db.n_syms - 1].name;
  for (size_t i = 0; !rc && i < m->n_field; i++) rc = add_sym(self, m->field[i]->name, file);
  for (size_t i = 0; !rc && i < m->n_oneof_decl; i++) rc = add_sym(self, m->oneof_decl[i]->name, file);
  for (size_t i = 0; !rc && i < m->n_enum_type; i++) rc = add_enum(self, m->enum_type[i], file);
  for (size_t i = 0; !rc && i < m->n_nested_type; i++) rc = add_message(self, m->nested_type[i], file);
  return rc;
}

static int add_file(const file_proto *f, size_t file) {
  int rc = *f->package ? add_sym("", f->package, file) : 0;
  for (size_t i = 0; !rc && i < f->n_message_type; i++) rc = add_message(f->package, f->message_type[i], file);
  for (size_t i = 0; !rc && i < f->n_enum_type; i++) rc = add_enum(f->package, f->enum_type[i], file);
  for (size_t i = 0; !rc && i < f->n_service; i++) {
    rc = add_sym(f->package, f->service[i]->name, file);
    const char *svc = rc ? "" : db.syms[db.n_syms - 1].name;
    for (size_t j = 0; !rc && j < f->service[i]->n_method; j++) rc = add_sym(svc, f->service[i]->method[j]->name, file);
  }
  return rc;
}

static ssize_t file_index(const char *name) {
  for (size_t i = 0; i < db.n_files; i++)
    if (strcmp(db.files[i].name, name) == 0) return (ssize_t)i;
  return -1;
}

/* By name, then by file: a package many files share resolves to the first. */
static int by_name(const void *a, const void *b) {
  const refl_sym *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->file > y->file) - (x->file < y->file);
}

static int link_deps(size_t i) {
  const file_proto *f = db.protos[i];
  db.files[i].deps = calloc(f->n_dependency + 1, sizeof *db.files[i].deps);
  if (!db.files[i].deps) return REC_ENOMEM;
  for (size_t d = 0; d < f->n_dependency; d++) {
    ssize_t j = file_index(f->dependency[d]);
    if (j < 0) return REC_ECORRUPT; /* protoc --include_imports puts every import in */
    db.files[i].deps[db.files[i].n_deps++] = (size_t)j;
  }
  return 0;
}

/* What is left of a failed build stays reachable from 'db' and is never
 * used: rc says the index is unusable, and it is built once per process. */
static void build_db(void) {
  db.set = recd__internal__file_descriptor_set__unpack(NULL, rec_descriptor_set_len, rec_descriptor_set);
  if (!db.set) {
    db.rc = REC_ECORRUPT;
    return;
  }
  db.n_files = db.set->n_file;
  db.files = calloc(db.n_files + 1, sizeof *db.files);
  db.protos = calloc(db.n_files + 1, sizeof *db.protos);
  if (!db.files || !db.protos) {
    db.rc = REC_ENOMEM;
    return;
  }
  for (size_t i = 0; i < db.n_files; i++) {
    db.protos[i] = recd__internal__file_descriptor_proto__unpack(NULL, db.set->file[i].len, db.set->file[i].data);
    if (!db.protos[i]) {
      db.rc = REC_ECORRUPT;
      return;
    }
    db.files[i] = (refl_file){db.protos[i]->name, db.set->file[i], NULL, 0};
  }
  for (size_t i = 0; i < db.n_files && !db.rc; i++)
    if (!(db.rc = link_deps(i))) db.rc = add_file(db.protos[i], i);
  if (!db.rc) qsort(db.syms, db.n_syms, sizeof *db.syms, by_name);
}

int rpc__reflect_init(void) {
  pthread_once(&db_once, build_db);
  return db.rc;
}

static ssize_t symbol_file(const char *name) {
  size_t lo = 0, hi = db.n_syms;
  while (lo < hi) { /* the first entry not below 'name' */
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(db.syms[mid].name, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo < db.n_syms && strcmp(db.syms[lo].name, name) == 0 ? (ssize_t)db.syms[lo].file : -1;
}

/* "/rec.v1.Ranking/Recommend" -> "rec.v1.Ranking" in 'a', or NULL. */
static char *service_of(const char *path, arena *a) {
  const char *slash = strrchr(path, '/');
  if (path[0] != '/' || !slash || slash == path) return NULL;
  return arena_strndup(a, path + 1, (size_t)(slash - path - 1));
}

static bool unlisted(const rpc_server_opts *o, const rpc_method *m) {
  for (size_t i = 0; i < o->n_unlisted; i++)
    if (o->unlisted[i] == m) return true;
  return false;
}

int rpc__reflect_services(const rpc_server_opts *o, arena *a, const char ***out, size_t *n_out) {
  static const char *const BUILT_IN[] = {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                                         "grpc.reflection.v1alpha.ServerReflection"};
  size_t n_built_in = sizeof BUILT_IN / sizeof BUILT_IN[0];
  const char **names = arena_calloc(a, o->n_methods + n_built_in + 1, sizeof *names);
  if (!names) return REC_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < o->n_methods; i++) {
    if (unlisted(o, o->methods[i])) continue;
    char *svc = service_of(o->methods[i]->path, a);
    if (!svc) return REC_ENOMEM;
    bool seen = false;
    for (size_t j = 0; j < k; j++) seen |= strcmp(names[j], svc) == 0;
    if (!seen) names[k++] = svc;
  }
  for (size_t i = 0; i < n_built_in; i++) names[k++] = BUILT_IN[i];
  *out = names;
  *n_out = k;
  return 0;
}

/* Makes 'r' an error_response: what the client asked for does not exist or
 * makes no sense, which the stream answers and goes on. Strings the client
 * sent are cut to 200 bytes (%.200s) by the callers, so that an answer stays small. */
__attribute__((format(printf, 4, 5)))
static int error_response(rpc_reflect_resp *r, int code, arena *a, const char *fmt, ...) {
  Grpc__Reflection__V1__ErrorResponse *e = arena_alloc(a, sizeof *e);
  if (!e) return REC_ENOMEM;
  grpc__reflection__v1__error_response__init(e);
  e->error_code = (int32_t)rpc__status_of(code);
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!(e->error_message = arena_strndup(a, msg, strlen(msg)))) return REC_ENOMEM;
  r->message_response_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
  r->error_response = e;
  return 0;
}

static void walk_deps(size_t f, bool *seen, size_t *order, size_t *n) {
  if (seen[f]) return;
  seen[f] = true;
  order[(*n)++] = f;
  for (size_t i = 0; i < db.files[f].n_deps; i++) walk_deps(db.files[f].deps[i], seen, order, n);
}

/* The file, then everything it imports (a client resolves the types a file
 * names without asking again). */
static int file_response(rpc_reflect_resp *r, size_t f, arena *a) {
  Grpc__Reflection__V1__FileDescriptorResponse *fr = arena_alloc(a, sizeof *fr);
  bool *seen = arena_calloc(a, db.n_files, sizeof *seen);
  size_t *order = arena_calloc(a, db.n_files, sizeof *order);
  ProtobufCBinaryData *files = arena_calloc(a, db.n_files, sizeof *files);
  if (!fr || !seen || !order || !files) return REC_ENOMEM;
  grpc__reflection__v1__file_descriptor_response__init(fr);
  walk_deps(f, seen, order, &fr->n_file_descriptor_proto);
  for (size_t i = 0; i < fr->n_file_descriptor_proto; i++) files[i] = db.files[order[i]].bytes;
  fr->file_descriptor_proto = files;
  r->message_response_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
  r->file_descriptor_response = fr;
  return 0;
}

static int list_response(rpc_reflect_resp *r, const char *const *services, size_t n, arena *a) {
  Grpc__Reflection__V1__ListServiceResponse *l = arena_alloc(a, sizeof *l);
  Grpc__Reflection__V1__ServiceResponse **s = arena_calloc(a, n + 1, sizeof *s);
  if (!l || !s) return REC_ENOMEM;
  grpc__reflection__v1__list_service_response__init(l);
  for (size_t i = 0; i < n; i++) {
    if (!(s[i] = arena_alloc(a, sizeof *s[i]))) return REC_ENOMEM;
    grpc__reflection__v1__service_response__init(s[i]);
    s[i]->name = (char *)services[i];
  }
  l->service = s;
  l->n_service = n;
  r->message_response_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
  r->list_services_response = l;
  return 0;
}

static int answer_case(const char *const *services, size_t n_services, const rpc_reflect_req *q,
                       rpc_reflect_resp *r, arena *a) {
  ssize_t f;
  switch (q->message_request_case) {
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
    return list_response(r, services, n_services, a);
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    if ((f = file_index(q->file_by_filename)) < 0)
      return error_response(r, REC_ENOTFOUND, a, "no file named '%.200s' (list_services, then "
                            "file_containing_symbol, finds the names)", q->file_by_filename);
    return file_response(r, (size_t)f, a);
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
    if ((f = symbol_file(q->file_containing_symbol)) < 0)
      return error_response(r, REC_ENOTFOUND, a, "no symbol '%.200s' (give a fully qualified name, "
                            "e.g. rec.v1.Ranking)", q->file_containing_symbol);
    return file_response(r, (size_t)f, a);
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
    return error_response(r, REC_ENOTFOUND, a, "no extensions: recd's protos declare none");
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
    return error_response(r, REC_ENOTFOUND, a, "no extensions of '%.200s': recd's protos declare none",
                          q->all_extension_numbers_of_type);
  default:
    return error_response(r, REC_EINVAL, a, "the request names no question: set one of list_services, "
                          "file_by_filename, file_containing_symbol");
  }
}

/* The request as the answer echoes it: its known fields only. Unknown ones
 * are the client's bytes, which go back to no one. */
static rpc_reflect_req *echo_of(const rpc_reflect_req *q, arena *a) {
  rpc_reflect_req *e = arena_alloc(a, sizeof *e);
  if (!e) return NULL;
  *e = *q;
  e->base.n_unknown_fields = 0;
  e->base.unknown_fields = NULL;
  if (q->message_request_case ==
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION && q->file_containing_extension) {
    Grpc__Reflection__V1__ExtensionRequest *x = arena_alloc(a, sizeof *x);
    if (!x) return NULL;
    *x = *q->file_containing_extension;
    x->base.n_unknown_fields = 0;
    x->base.unknown_fields = NULL;
    e->file_containing_extension = x;
  }
  return e;
}

int rpc__reflect_answer(const char *const *services, size_t n_services, const rpc_reflect_req *q, arena *a,
                        rpc_reflect_resp **out) {
  rpc_reflect_resp *r = arena_alloc(a, sizeof *r);
  if (!r) return REC_ENOMEM;
  grpc__reflection__v1__server_reflection_response__init(r);
  r->original_request = echo_of(q, a);
  if (!r->original_request) return REC_ENOMEM;
  r->valid_host = q->host;
  int rc = rpc__reflect_init() != 0 ? error_response(r, REC_EINTERNAL, a, "recd's embedded descriptor set is unreadable")
                                    : answer_case(services, n_services, q, r, a);
  if (rc) return rc;
  *out = r;
  return 0;
}

int rpc__reflect_error(int code, const char *msg, arena *a, rpc_reflect_resp **out) {
  rpc_reflect_resp *r = arena_alloc(a, sizeof *r);
  if (!r) return REC_ENOMEM;
  grpc__reflection__v1__server_reflection_response__init(r);
  int rc = error_response(r, code, a, "%s", msg);
  if (rc) return rc;
  *out = r;
  return 0;
}
