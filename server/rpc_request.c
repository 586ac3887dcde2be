/* server/rpc_request.c - a request's bytes out of gRPC's byte buffer, then
 * rpc_decode. recd turns gRPC's own request decompression off: it inflates
 * a whole message before any size limit applies (a 254 KiB gzip request
 * became 256 MiB). Here a compressed request is inflated in a stream that
 * stops at max_message_bytes, so the limit holds for what the request
 * inflates to, not for what it weighs on the wire. */
#include "server/rpc_internal.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <string.h>
#include <zlib.h>

/* Inflates the gzip or zlib (gRPC's "deflate") stream in bb's slices into
 * the arena, refusing it once the output would pass 'max' bytes. */
static int inflate_bounded(grpc_byte_buffer *bb, size_t max, arena *a, uint8_t **out, size_t *n,
                           rec_error *err) {
  uint8_t *buf = arena_alloc(a, max + 1);
  if (!buf) return rec_fail(err, REC_ENOMEM, "out of memory");
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 15 + 32) != Z_OK) return rec_fail(err, REC_ENOMEM, "out of memory");
  z.next_out = buf;
  z.avail_out = (uInt)(max + 1); /* one byte more than allowed tells "too big" apart */
  int zr = Z_OK;
  grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
  for (size_t i = 0; i < sb->count && zr == Z_OK; i++) {
    z.next_in = GRPC_SLICE_START_PTR(sb->slices[i]);
    z.avail_in = (uInt)GRPC_SLICE_LENGTH(sb->slices[i]);
    while (z.avail_in && z.avail_out && zr == Z_OK) zr = inflate(&z, Z_NO_FLUSH);
  }
  size_t got = (size_t)(z.next_out - buf);
  inflateEnd(&z);
  if (got > max)
    return rec_fail(err, REC_ETOOBIG, "compressed request inflates past %zu bytes (max_message_bytes)", max);
  if (zr != Z_STREAM_END)
    return rec_fail(err, REC_EINVAL, "compressed request body is not a complete %s stream",
                    bb->data.raw.compression == GRPC_COMPRESS_GZIP ? "gzip" : "deflate");
  *out = buf;
  *n = got;
  return 0;
}

ProtobufCMessage *rpc__read_request(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                                    const rpc_limits *lim, size_t max, arena *a, rec_error *err) {
  if (bb->type != GRPC_BB_RAW) {
    rec_fail(err, REC_EINVAL, "request body has an unknown buffer type");
    return NULL;
  }
  if (bb->data.raw.compression != GRPC_COMPRESS_NONE) {
    if (bb->data.raw.compression != GRPC_COMPRESS_DEFLATE && bb->data.raw.compression != GRPC_COMPRESS_GZIP) {
      rec_fail(err, REC_EUNIMPL, "request compression %d is not supported; use gzip, deflate or none",
               (int)bb->data.raw.compression);
      return NULL;
    }
    uint8_t *p = NULL;
    size_t n = 0;
    return inflate_bounded(bb, max, a, &p, &n, err) ? NULL : rpc_decode(p, n, d, lim, a, err);
  }
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) {
    rec_fail(err, REC_EINVAL, "request body cannot be read");
    return NULL;
  }
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  ProtobufCMessage *m = rpc_decode(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), d, lim, a, err);
  grpc_slice_unref(s);
  return m;
}
