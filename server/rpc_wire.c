/* server/rpc_wire.c - a request's bytes checked against its descriptor
 * before protobuf-c decodes them. protobuf-c allocates for every element of
 * a repeated field and every unknown field it meets, and copies strings
 * without looking at them, so a 4 MiB request of empty events becomes
 * hundreds of MiB, and a string with a NUL or broken UTF-8 would be cut
 * short or echoed back broken. The walk refuses both before any allocation:
 * it reads the wire format (tags, varints, lengths) and keeps nothing. */
#include "server/rpc.h"
#include "common/utf8.h"

#include <stdio.h>
#include <string.h>

const rpc_limits rpc_default_limits = {.max_repeated = 10000, .max_unknown = 64, .max_depth = 8};

enum { MAX_FIELDS = 64, MAX_FRAMES = 32 }; /* fields counted per message; ours have far fewer */

/* Where the walk is: a stack of fields, spelled out ("events[3].user_id")
 * only for an error message, so a good request costs no formatting. */
typedef struct frame {
  const ProtobufCFieldDescriptor *f;
  size_t index;
  bool indexed;
} frame;

typedef struct walk {
  const ProtobufCMessageDescriptor *top; /* the request's type, for messages */
  const rpc_limits *lim;
  rec_error *err;
  frame at[MAX_FRAMES];
  int depth;
  char path[192];
} walk;

static const char *path(walk *w) {
  size_t n = 0;
  w->path[0] = '\0';
  for (int i = 0; i < w->depth && i < MAX_FRAMES && n < sizeof w->path; i++) {
    const frame *x = &w->at[i];
    int k = x->indexed ? snprintf(w->path + n, sizeof w->path - n, "%s%s[%zu]", i ? "." : "", x->f->name, x->index)
                       : snprintf(w->path + n, sizeof w->path - n, "%s%s", i ? "." : "", x->f->name);
    n += k > 0 ? (size_t)k : 0;
  }
  return w->path;
}

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

static int malformed(walk *w) {
  return rec_fail(w->err, REC_EINVAL, "request body is not a valid %s protobuf message (at %s)",
                  w->top->name, w->depth ? path(w) : "the top level");
}

static void push(walk *w, const ProtobufCFieldDescriptor *f, bool indexed, size_t index) {
  if (w->depth < MAX_FRAMES) w->at[w->depth] = (frame){f, index, indexed};
  w->depth++;
}

static int check_string(walk *w, const uint8_t *s, size_t n) {
  if (memchr(s, 0, n))
    return rec_fail(w->err, REC_EINVAL, "%s contains a NUL byte", path(w));
  if (!rec_utf8_valid((const char *)s, n))
    return rec_fail(w->err, REC_EINVAL, "%s is not valid UTF-8", path(w));
  return 0;
}

/* Elements in a packed run of 'n' bytes of scalar field f. */
static size_t packed_count(const ProtobufCFieldDescriptor *f, const uint8_t *p, size_t n) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_FLOAT: return n / 4;
  case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_DOUBLE: return n / 8;
  default: {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += !(p[i] & 0x80);
    return c;
  }
  }
}

static int walk_message(walk *w, const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *d, int depth);

/* One length-delimited field's payload; *elements is how many elements of
 * the field it holds (a packed run holds several). */
static int delimited(walk *w, const ProtobufCFieldDescriptor *f, const uint8_t *p, size_t n,
                     size_t index, int depth, size_t *elements) {
  bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
  push(w, f, repeated, index);
  int rc = 0;
  *elements = 1;
  if (f->type == PROTOBUF_C_TYPE_STRING)
    rc = check_string(w, p, n);
  else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
    rc = depth + 1 > w->lim->max_depth
           ? rec_fail(w->err, REC_EINVAL, "%s nests messages deeper than %d", path(w), w->lim->max_depth)
           : walk_message(w, p, n, f->descriptor, depth + 1);
  else if (repeated && f->type != PROTOBUF_C_TYPE_BYTES)
    *elements = packed_count(f, p, n);
  w->depth--;
  return rc;
}

static int too_many(walk *w, const ProtobufCFieldDescriptor *f) {
  push(w, f, false, 0);
  return rec_fail(w->err, REC_ETOOBIG, "%s holds more than %zu elements, more than any request may",
                  path(w), w->lim->max_repeated);
}

static int skip(walk *w, unsigned wire, const uint8_t **p, const uint8_t *end, uint64_t *len) {
  uint64_t v;
  *len = 0;
  switch (wire) {
  case 0: return varint(p, end, &v) ? 0 : malformed(w);
  case 1: if (end - *p < 8) return malformed(w); *p += 8; return 0;
  case 5: if (end - *p < 4) return malformed(w); *p += 4; return 0;
  case 2:
    if (!varint(p, end, len) || *len > (uint64_t)(end - *p)) return malformed(w);
    return 0;
  default: return malformed(w); /* groups (3, 4) and 6, 7 are not proto3 */
  }
}

static int walk_message(walk *w, const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *d, int depth) {
  const uint8_t *end = p + n;
  size_t counts[MAX_FIELDS + 1] = {0}, unknown = 0; /* the last: fields past MAX_FIELDS, together */
  while (p < end) {
    uint64_t tag, len;
    if (!varint(&p, end, &tag) || tag >> 3 == 0 || tag >> 3 > 536870911u) return malformed(w);
    unsigned wire = (unsigned)(tag & 7);
    int rc = skip(w, wire, &p, end, &len);
    if (rc) return rc;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
    if (!f) {
      if (++unknown > w->lim->max_unknown)
        return rec_fail(w->err, REC_EINVAL, "%s has more than %zu unknown fields", w->depth ? path(w) : "request",
                        w->lim->max_unknown);
      p += len;
      continue;
    }
    size_t i = (size_t)(f - d->fields), *count = &counts[i < MAX_FIELDS ? i : MAX_FIELDS];
    size_t elements = 1;
    if (wire == 2 && (rc = delimited(w, f, p, (size_t)len, *count, depth, &elements))) return rc;
    p += len;
    if (f->label == PROTOBUF_C_LABEL_REPEATED && (*count += elements) > w->lim->max_repeated)
      return too_many(w, f);
  }
  return 0;
}

ProtobufCMessage *rpc_decode(const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *d,
                             const rpc_limits *lim, arena *a, rec_error *err) {
  walk w = {.top = d, .lim = lim ? lim : &rpc_default_limits, .err = err};
  if (walk_message(&w, p, n, d, 0)) return NULL;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, &a->pb, n, p);
  if (!m) rec_fail(err, REC_EINVAL, "request body is not a valid %s protobuf message", d->name);
  return m;
}
