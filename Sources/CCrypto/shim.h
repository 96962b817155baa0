#ifndef GITFS_CCRYPTO_SHIM_H
#define GITFS_CCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <stdio.h>

/* git's object id of a blob: SHA-1 of "blob <size>\0" + content, with OpenSSL's EVP interface
   (SHA-NI where the CPU has it: about 3x git_odb_hash's collision-detecting SHA-1 on this machine).
   Returns 0 on success. */
static inline int gitfs_blob_sha1(const void *data, size_t size, unsigned char out[20]) {
    char header[64];
    int n = snprintf(header, sizeof header, "blob %zu", size);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return -1;
    unsigned int len = 0;
    int ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL)
          && EVP_DigestUpdate(ctx, header, (size_t)n + 1)
          && (size == 0 || EVP_DigestUpdate(ctx, data, size))
          && EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    return ok && len == 20 ? 0 : -1;
}

/* The same id computed over content that arrives in pieces (a cache entry read chunk by chunk):
   start with the content's total size, update with each piece, finish into out (frees the context). */
static inline EVP_MD_CTX *gitfs_blob_sha1_start(size_t size) {
    char header[64];
    int n = snprintf(header, sizeof header, "blob %zu", size);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return NULL;
    if (!EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) || !EVP_DigestUpdate(ctx, header, (size_t)n + 1)) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
static inline int gitfs_sha1_update(EVP_MD_CTX *ctx, const void *data, size_t size) {
    return size == 0 || EVP_DigestUpdate(ctx, data, size) ? 0 : -1;
}
static inline int gitfs_sha1_finish(EVP_MD_CTX *ctx, unsigned char out[20]) {
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    return ok && len == 20 ? 0 : -1;
}
#endif
