#ifndef GITFS_CCURL_SHIM_H
#define GITFS_CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one typed wrapper per
   argument type. */
static inline CURLcode gitfs_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode gitfs_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode gitfs_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode gitfs_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode gitfs_curl_setopt_list(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }

typedef size_t (*gitfs_curl_data_cb)(char *, size_t, size_t, void *);
typedef int (*gitfs_curl_progress_cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
static inline CURLcode gitfs_curl_set_write(CURL *h, gitfs_curl_data_cb f, void *ctx) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f);
    return rc ? rc : curl_easy_setopt(h, CURLOPT_WRITEDATA, ctx);
}
static inline CURLcode gitfs_curl_set_read(CURL *h, gitfs_curl_data_cb f, void *ctx) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_READFUNCTION, f);
    return rc ? rc : curl_easy_setopt(h, CURLOPT_READDATA, ctx);
}
static inline CURLcode gitfs_curl_set_progress(CURL *h, gitfs_curl_progress_cb f, void *ctx) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, f);
    if (!rc) rc = curl_easy_setopt(h, CURLOPT_XFERINFODATA, ctx);
    return rc ? rc : curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
}
static inline long gitfs_curl_response_code(CURL *h) {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    return code;
}
#endif
