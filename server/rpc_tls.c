/* server/rpc_tls.c - TLS credentials for the gRPC C core: a listener's
 * (reloadable through a certificate-config fetcher) and a channel's.
 * Files are checked with OpenSSL when read (they parse; the key belongs
 * to the certificate), so a bad file is refused with its name instead of
 * failing every handshake later. */
#include "server/rpc_internal.h"
#include "common/fileio.h"
#include "common/log.h"

#include <grpc/grpc_security.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One certificate set as gRPC wants it: PEM strings. */
typedef struct pem_set {
  char *cert, *key, *ca;
  char subject[256];
  int validity;              /* the certificate: 0 valid now, < 0 expired, > 0 not valid yet */
} pem_set;

static void pem_set_destroy(pem_set *p) {
  free(p->cert);
  if (p->key) {
    memset(p->key, 0, strlen(p->key));
    free(p->key);
  }
  free(p->ca);
  memset(p, 0, sizeof *p);
}

static X509 *first_cert(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return x;
}

/* Reads and checks cert/key (either may be NULL when 'need_pair' is false)
 * and 'ca' (may be NULL). */
static int pem_set_read(pem_set *p, const char *cert, const char *key, const char *ca, bool need_pair,
                        rec_error *err) {
  memset(p, 0, sizeof *p);
  size_t n;
  bool have_cert = cert && *cert, have_key = key && *key;
  if (need_pair && (!have_cert || !have_key))
    return rec_fail(err, REC_EINVAL, "TLS needs both a certificate and a key file");
  if (have_cert != have_key)
    return rec_fail(err, REC_EINVAL, "a client certificate needs its key file, and a key its certificate");
  if (have_cert) {
    if (!(p->cert = rec_read_file(cert, &n, err)) || !(p->key = rec_read_file(key, &n, err))) goto fail;
    X509 *x = first_cert(p->cert);
    if (!x) {
      rec_fail(err, REC_EINVAL, "%s: no PEM certificate in it", cert);
      goto fail;
    }
    BIO *b = BIO_new_mem_buf(p->key, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    bool match = k && X509_check_private_key(x, k) == 1;
    X509_NAME_oneline(X509_get_subject_name(x), p->subject, sizeof p->subject);
    p->validity = X509_cmp_current_time(X509_get0_notAfter(x)) < 0 ? -1
                : X509_cmp_current_time(X509_get0_notBefore(x)) > 0 ? 1 : 0;
    EVP_PKEY_free(k);
    X509_free(x);
    ERR_clear_error();
    if (!k) {
      rec_fail(err, REC_EINVAL, "%s: no PEM private key in it (or it is encrypted)", key);
      goto fail;
    }
    if (!match) {
      rec_fail(err, REC_EINVAL, "%s is not the key of the certificate in %s", key, cert);
      goto fail;
    }
  }
  if (ca && *ca) {
    if (!(p->ca = rec_read_file(ca, &n, err))) goto fail;
    X509 *x = first_cert(p->ca);
    ERR_clear_error();
    if (!x) {
      rec_fail(err, REC_EINVAL, "%s: no PEM certificate in it", ca);
      goto fail;
    }
    X509_free(x);
  }
  return 0;
fail:
  pem_set_destroy(p);
  return err ? err->code : REC_EINVAL;
}

/* A listener's TLS: the set in use and the one a reload put next. */
struct rpc_tls_state {
  rpc_tls opts;
  char cert[4096], key[4096], ca[4096];   /* the paths, re-read on reload */
  pthread_mutex_t mu;
  pem_set next;
  bool has_next;
};

static grpc_ssl_certificate_config_reload_status fetch(void *arg, grpc_ssl_server_certificate_config **config) {
  rpc_tls_state *t = arg;
  pthread_mutex_lock(&t->mu);
  if (!t->has_next) {
    pthread_mutex_unlock(&t->mu);
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  }
  grpc_ssl_pem_key_cert_pair pair = {t->next.key, t->next.cert};
  /* gRPC 1.51 asserts on a fetched config without roots, even when no
   * client certificate is asked for; then the server's own chain stands in,
   * unused. */
  *config = grpc_ssl_server_certificate_config_create(t->next.ca ? t->next.ca : t->next.cert, &pair, 1);
  pem_set_destroy(&t->next);
  t->has_next = false;
  pthread_mutex_unlock(&t->mu);
  return *config ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
}

static int stage(rpc_tls_state *t, rec_error *err) {
  pem_set p;
  int rc = pem_set_read(&p, t->cert, t->key, t->ca, true, err);
  if (rc) return rc;
  pthread_mutex_lock(&t->mu);
  if (t->has_next) pem_set_destroy(&t->next);
  t->next = p;
  t->has_next = true;
  pthread_mutex_unlock(&t->mu);
  char subject[300];
  rec_log_quote(subject, sizeof subject, p.subject, strlen(p.subject));
  if (p.validity)
    LOG_WARN(p.validity < 0 ? "the TLS certificate has expired: clients will refuse it"
                            : "the TLS certificate is not valid yet: clients will refuse it",
             "cert=%s subject=\"%s\"", t->cert, subject);
  LOG_INFO("TLS certificate read", "cert=%s subject=\"%s\" client_cert=%s", t->cert, subject,
           t->opts.client_cert == RPC_CLIENT_CERT_REQUIRE ? "require"
           : t->opts.client_cert == RPC_CLIENT_CERT_OPTIONAL ? "optional" : "none");
  return 0;
}

int rpc__tls_new(const rpc_tls *o, rpc_tls_state **out, rec_error *err) {
  if (o->client_cert != RPC_CLIENT_CERT_NONE && (!o->client_ca_file || !*o->client_ca_file))
    return rec_fail(err, REC_EINVAL, "client certificates need a client CA file");
  rpc_tls_state *t = calloc(1, sizeof *t);
  if (!t) return rec_fail(err, REC_ENOMEM, "out of memory");
  t->opts = *o;
  snprintf(t->cert, sizeof t->cert, "%s", o->cert_file ? o->cert_file : "");
  snprintf(t->key, sizeof t->key, "%s", o->key_file ? o->key_file : "");
  snprintf(t->ca, sizeof t->ca, "%s", o->client_ca_file ? o->client_ca_file : "");
  pthread_mutex_init(&t->mu, NULL);
  int rc = stage(t, err);
  if (rc) {
    rpc__tls_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void rpc__tls_free(rpc_tls_state *t) {
  if (!t) return;
  if (t->has_next) pem_set_destroy(&t->next);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

int rpc__tls_reload(rpc_tls_state *t, rec_error *err) { return stage(t, err); }

grpc_server_credentials *rpc__tls_server_creds(rpc_tls_state *t) {
  grpc_ssl_client_certificate_request_type req =
      t->opts.client_cert == RPC_CLIENT_CERT_REQUIRE ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
      : t->opts.client_cert == RPC_CLIENT_CERT_OPTIONAL ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                                        : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  grpc_ssl_server_credentials_options *o =
      grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, t);
  return o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

grpc_channel *rpc__channel_new(const char *target, const rpc_client_tls *tls, rec_error *err) {
  grpc_channel_credentials *creds = NULL;
  bool secure = tls && tls->ca_file && *tls->ca_file;
  if (!secure) {
    if (tls && ((tls->cert_file && *tls->cert_file) || (tls->key_file && *tls->key_file))) {
      rec_fail(err, REC_EINVAL, "a client certificate needs TLS: give the server's CA file too");
      return NULL;
    }
    creds = grpc_insecure_credentials_create();
  } else {
    pem_set p;
    if (pem_set_read(&p, tls->cert_file, tls->key_file, tls->ca_file, false, err) != 0) return NULL;
    grpc_ssl_pem_key_cert_pair pair = {p.key, p.cert};
    creds = grpc_ssl_credentials_create_ex(p.ca, p.cert ? &pair : NULL, NULL, NULL);
    pem_set_destroy(&p); /* gRPC keeps its own copies */
    if (!creds) {
      rec_fail(err, REC_EINVAL, "gRPC refused the TLS settings");
      return NULL;
    }
  }
  grpc_arg args[1];
  size_t n = 0;
  if (secure && tls->server_name && *tls->server_name)
    args[n++] = (grpc_arg){GRPC_ARG_STRING, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, {.string = (char *)tls->server_name}};
  grpc_channel_args ca = {n, args};
  grpc_channel *ch = grpc_channel_create(target, creds, &ca);
  grpc_channel_credentials_release(creds);
  if (!ch) rec_fail(err, REC_ENOMEM, "cannot create a channel to %s", target);
  return ch;
}
