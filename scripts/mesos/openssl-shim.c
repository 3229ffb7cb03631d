/*
 * OpenSSL 1.0 stand-ins for the Mesos 1.11 library from PyPI, which was linked against
 * libssl.so.1.0.0 and libcrypto.so.1.0.0. Debian 12 only has OpenSSL 3, so this file
 * builds both sonames (-DSHIM_LIBSSL or -DSHIM_LIBCRYPTO): every symbol the library
 * imports, under the version node it asks for (see libssl.map, libcrypto.map).
 *
 * Each symbol is a one-instruction trampoline through a pointer that a constructor fills
 * from the OpenSSL 3 library of the same role, by the same name or by its 1.1+ successor.
 * Set-up and locking calls that 1.1 made obsolete do nothing. A symbol that OpenSSL 3
 * lacks aborts with its name when called, so a gap shows itself instead of misbehaving.
 * libprocess runs with SSL off here, so in practice only the set-up calls are reached.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shim_missing(const char *name)
{
    fprintf(stderr, "openssl-shim: %s is not available through OpenSSL 3\n", name);
    abort();
}

struct shim_entry {
    const char *name;   /* what the Mesos library calls */
    const char *target; /* what OpenSSL 3 calls it */
    void **slot;
};

/* FWD(name, target): export `name`, jumping to `target` in the OpenSSL 3 library. */
#define FWD(name, target)                                                              \
    __attribute__((visibility("hidden"))) void shim_miss_##name(void)                  \
    {                                                                                  \
        shim_missing(#name);                                                           \
    }                                                                                  \
    __attribute__((visibility("hidden"))) void *shim_slot_##name = (void *)shim_miss_##name; \
    __asm__(".text\n"                                                                  \
            ".globl " #name "\n"                                                       \
            ".type " #name ", @function\n" #name ":\n"                                 \
            "\tjmp *shim_slot_" #name "(%rip)\n"                                       \
            ".size " #name ", . - " #name "\n");
#define SAME(name) FWD(name, name)

#define ENTRY(name, target) {#name, #target, &shim_slot_##name},
#define ENTRY_SAME(name) ENTRY(name, name)

#ifdef SHIM_LIBSSL

#define REAL_LIBRARY "libssl.so.3"
#define SYMBOLS(F, S)                                                                  \
    S(SSL_CTX_callback_ctrl) S(SSL_CTX_check_private_key) S(SSL_CTX_ctrl)              \
    S(SSL_CTX_free) S(SSL_CTX_get_cert_store) S(SSL_CTX_load_verify_locations)         \
    S(SSL_CTX_new) S(SSL_CTX_set_cipher_list) S(SSL_CTX_set_client_CA_list)            \
    S(SSL_CTX_set_default_verify_paths) S(SSL_CTX_set_session_id_context)              \
    S(SSL_CTX_set_verify) S(SSL_CTX_set_verify_depth) S(SSL_CTX_use_PrivateKey)        \
    S(SSL_CTX_use_PrivateKey_file) S(SSL_CTX_use_certificate)                          \
    S(SSL_CTX_use_certificate_chain_file) S(SSL_ctrl) S(SSL_do_handshake) S(SSL_free)  \
    S(SSL_get_error) S(SSL_get_rbio) S(SSL_get_servername) S(SSL_get_shutdown)         \
    S(SSL_get_verify_result) S(SSL_get_wbio) S(SSL_new) S(SSL_pending) S(SSL_read)     \
    S(SSL_renegotiate) S(SSL_set_SSL_CTX) S(SSL_set_accept_state) S(SSL_set_bio)       \
    S(SSL_set_connect_state) S(SSL_set_info_callback) S(SSL_set_shutdown)              \
    S(SSL_set_verify) S(SSL_shutdown) S(SSL_state_string) S(SSL_state_string_long)     \
    S(SSL_write) S(SSL_CTX_set_next_proto_select_cb)                                   \
    S(SSL_CTX_set_next_protos_advertised_cb) S(SSL_get0_next_proto_negotiated)         \
    S(TLSv1_2_method) S(SSL_get0_param)                                                \
    /* Renamed in OpenSSL 1.1 / 3.0. */                                                \
    F(SSL_get_peer_certificate, SSL_get1_peer_certificate)                             \
    F(SSL_state, SSL_get_state)                                                        \
    F(SSLv23_method, TLS_method)

/* OpenSSL 1.1 initialises itself; these only exist for old callers. */
int SSL_library_init(void) { return 1; }
void SSL_load_error_strings(void) {}

#elif defined(SHIM_LIBCRYPTO)

#define REAL_LIBRARY "libcrypto.so.3"
#define SYMBOLS(F, S)                                                                  \
    S(ASN1_INTEGER_set) S(ASN1_STRING_free) S(ASN1_STRING_length) S(ASN1_STRING_new)   \
    S(ASN1_STRING_set) S(ASN1_STRING_to_UTF8) S(BIO_clear_flags) S(BIO_ctrl)           \
    S(BIO_free) S(BIO_new) S(BIO_new_bio_pair) S(BIO_new_mem_buf) S(BIO_new_socket)    \
    S(BIO_number_read) S(BIO_number_written) S(BIO_read) S(BIO_s_mem) S(BIO_set_flags) \
    S(BIO_test_flags) S(BIO_write) S(BN_free) S(BN_new) S(BN_set_word) S(CRYPTO_free)  \
    S(EC_KEY_free) S(EC_KEY_new_by_curve_name) S(ERR_clear_error) S(ERR_error_string)  \
    S(ERR_error_string_n) S(ERR_get_error) S(ERR_peek_error) S(ERR_reason_error_string) \
    S(EVP_PKEY_assign) S(EVP_PKEY_free) S(EVP_PKEY_new) S(EVP_sha1) S(EVP_sha256)      \
    S(GENERAL_NAME_free) S(GENERAL_NAME_new) S(HMAC) S(PEM_read_bio_PrivateKey)        \
    S(PEM_read_bio_RSAPrivateKey) S(PEM_read_bio_RSA_PUBKEY) S(PEM_read_bio_X509)      \
    S(PEM_read_bio_X509_AUX) S(PEM_write_PrivateKey) S(PEM_write_X509)                 \
    S(PEM_write_bio_X509) S(RAND_poll) S(RSA_free) S(RSA_generate_key_ex) S(RSA_new)   \
    S(RSA_sign) S(RSA_size) S(RSA_verify) S(SHA256) S(X509_NAME_ENTRY_get_data)        \
    S(X509_NAME_add_entry_by_txt) S(X509_NAME_dup) S(X509_NAME_free)                   \
    S(X509_NAME_get_entry) S(X509_NAME_get_index_by_NID) S(X509_NAME_get_text_by_NID)  \
    S(X509_NAME_oneline) S(X509_STORE_CTX_get_current_cert) S(X509_STORE_CTX_get_error) \
    S(X509_STORE_CTX_get_error_depth) S(X509_STORE_add_cert) S(X509_add1_ext_i2d)      \
    S(X509_free) S(X509_get_default_cert_dir) S(X509_get_default_cert_dir_env)         \
    S(X509_get_default_cert_file) S(X509_get_default_cert_file_env) S(X509_get_ext_d2i) \
    S(X509_get_issuer_name) S(X509_get_serialNumber) S(X509_get_subject_name)          \
    S(X509_gmtime_adj) S(X509_new) S(X509_set_issuer_name) S(X509_set_pubkey)          \
    S(X509_set_version) S(X509_sign) S(X509_verify_cert_error_string)                  \
    S(X509_VERIFY_PARAM_set1_host) S(X509_VERIFY_PARAM_set1_ip_asc)                    \
    /* Renamed in OpenSSL 1.1 / 3.0. */                                                \
    F(ASN1_STRING_data, ASN1_STRING_get0_data)                                         \
    F(sk_new_null, OPENSSL_sk_new_null) F(sk_num, OPENSSL_sk_num)                      \
    F(sk_pop_free, OPENSSL_sk_pop_free) F(sk_push, OPENSSL_sk_push)                    \
    F(sk_value, OPENSSL_sk_value)

/* Locking became internal in OpenSSL 1.1: one "lock", callbacks ignored. */
int CRYPTO_num_locks(void) { return 1; }
void CRYPTO_set_locking_callback(void *f) { (void)f; }
void CRYPTO_set_id_callback(void *f) { (void)f; }
void CRYPTO_set_dynlock_create_callback(void *f) { (void)f; }
void CRYPTO_set_dynlock_lock_callback(void *f) { (void)f; }
void CRYPTO_set_dynlock_destroy_callback(void *f) { (void)f; }
void OPENSSL_add_all_algorithms_noconf(void) {}

#else
#error "define SHIM_LIBSSL or SHIM_LIBCRYPTO"
#endif

SYMBOLS(FWD, SAME)

static struct shim_entry shim_entries[] = {SYMBOLS(ENTRY, ENTRY_SAME)};

__attribute__((constructor)) static void shim_init(void)
{
    void *real = dlopen(REAL_LIBRARY, RTLD_NOW | RTLD_GLOBAL);
    if (real == NULL) {
        fprintf(stderr, "openssl-shim: cannot load %s: %s\n", REAL_LIBRARY, dlerror());
        return; /* every call will abort with its name */
    }
    for (size_t i = 0; i < sizeof shim_entries / sizeof shim_entries[0]; i++) {
        void *p = dlsym(real, shim_entries[i].target);
        if (p != NULL) *shim_entries[i].slot = p;
    }
}
