/*
 * fake_ectrans.c: a stand-in for the vendor's ylz-certificate.dll, for ybplug's tests.
 *
 * It exports the same function as the real library,
 *
 *     int EcTrans(char* inData, char* outData);
 *
 * reads GBK JSON from inData and writes GBK JSON into the caller's buffer, and misbehaves on
 * request in the ways real voucher libraries do: wrong return codes, refusals, slowness, hangs,
 * crashes, not-quite-JSON, GB18030 names, replies as big as the buffer, garbage after the object.
 *
 * Choosing a behaviour.  The idcode selects it, so every call can choose its own and both
 * ybplug backends (in-process thread, child process) are driven the same way:
 *
 *     "idcode": "mode:NAME:ARG:TAIL"     e.g. "mode:slow:300:Q123", "mode:ok::Q123"
 *
 * An idcode without the "mode:" prefix uses $FAKE_ECTRANS_MODE ("NAME" or "NAME:ARG", read at
 * every call), else "ok"; the whole idcode is then the TAIL.  The TAIL is echoed back as idNo
 * (and inside ecToken), so a test sees that its input arrived.
 *
 * Modes (ARG in brackets):
 *   ok          normal reply, userName 张三 (GBK), insuOrg = the request's districtNo
 *   rc [n]      return n (default 5) with a JSON cause 网络连接失败
 *   refuse      flag 0, cause 二维码已失效
 *   echo        flag 0, cause repeats the whole idcode (a library that leaks its input)
 *   slow [ms]   sleep ms (default 300), then ok
 *   hang        block until FakeRelease() is called (never, in a killed child)
 *   segv        a real segmentation fault (write through a null pointer the compiler cannot see)
 *   abort       abort()
 *   comma       the spec's example reply byte for byte, with its trailing comma
 *   gb18030     userName 张𠮷, 𠮷 (U+20BB7) is outside GBK: GB18030 bytes 95 34 B2 35
 *   big [n]     exactly n bytes of reply (padded with spaces), then NUL; n may exceed the buffer
 *               the test allocated (ybplug keeps a guard zone behind it)
 *   garbage     the object, then CR LF, junk bytes, a NUL and more junk
 *   bom         UTF-8 BOM + GBK body;  bomutf8: UTF-8 BOM + UTF-8 body;  bom18030: GB18030 BOM
 *   numbers     flag and insuOrg as JSON numbers, cause null
 *   ctrl        raw newline and tab inside a string
 *   chatty      printf()s to stdout and stderr, then ok (a library that logs to the console)
 *   notjson     plain text
 *   truncated   a reply cut off mid-object
 *   deep [n]    flag 1 and a data node nested n (default 3000) arrays deep: well-formed, hostile
 *   environ     flag 0, cause "env:" then NAME=set|unset for YBPLUG_PWD, YBPLUG_USR, HIS_DB_PASSWORD
 *               and PATH (what the worker inherited; names only, never values)
 *
 * Whatever the mode, input that carries 李 in UTF-8 (E6 9D 8E) instead of GBK (C0 EE) is refused
 * with cause "inData is not GBK".
 *
 * Overlap detection.  Every call increments an in-flight counter on entry and decrements it on
 * exit, sleeping 2 ms in between.  A call that finds another in flight counts an overlap
 * (FakeOverlaps()) and, in the modes that answer normally, replies flag 0 with cause "overlap",
 * so a test sees it through either backend.  FakeCalls() counts calls, FakeRelease() frees every
 * hanging call.  The counters are per process: a child process has its own.
 *
 * POSIX (Linux, macOS): cc -shared -fPIC -O2 -o libfake_ectrans.so fake_ectrans.c -lpthread
 * Windows (MinGW-w64; the tests cross-build both): x86_64-w64-mingw32-gcc -shared -O2 -o
 * fake_ectrans64.dll fake_ectrans.c, and i686-w64-mingw32-gcc for the 32-bit DLL.
 */

#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>
#endif

#ifdef _WIN32
/* A Windows DLL, as the vendor ships it: exported, and EcTrans stdcall (on 32-bit MinGW decorates
 * it EcTrans@8 unless linked with --kill-at; on 64-bit there is one convention and no decoration). */
#define EXPORT __declspec(dllexport)
#define CALLCONV __stdcall
#else
#define EXPORT __attribute__((visibility("default")))
#define CALLCONV
#endif

static atomic_int in_flight;
static atomic_int overlaps;
static atomic_int calls;
static atomic_int release_generation;

/* A null pointer the optimiser cannot prove null, so the write below really faults. */
static int *volatile nowhere = NULL;

/* GBK (and GB18030) bytes of the Chinese texts. */
#define ZHANG_SAN "\xD5\xC5\xC8\xFD"                      /* 张三 */
#define ZHANG_JI "\xD5\xC5\x95\x34\xB2\x35"               /* 张𠮷, 𠮷 in GB18030 four bytes */
#define NETWORK_FAILED "\xCD\xF8\xC2\xE7\xC1\xAC\xBD\xD3\xCA\xA7\xB0\xDC" /* 网络连接失败 */
#define CODE_EXPIRED "\xB6\xFE\xCE\xAC\xC2\xEB\xD2\xD1\xCA\xA7\xD0\xA7"   /* 二维码已失效 */
#define BAD_CODE "\xCE\xDE\xD0\xA7\xB5\xC4\xB6\xFE\xCE\xAC\xC2\xEB:"      /* 无效的二维码: */

EXPORT int FakeOverlaps(void) { return atomic_load(&overlaps); }
EXPORT int FakeCalls(void) { return atomic_load(&calls); }
EXPORT void FakeRelease(void) { atomic_fetch_add(&release_generation, 1); }

static void sleep_ms(long ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0) {
    }
#endif
}

/* Copy the string value of "key" in the (flat enough) JSON input; "" when absent. */
static void json_string(const char *in, const char *key, char *out, size_t size)
{
    char pattern[64];
    const char *p;
    size_t n = 0;

    out[0] = '\0';
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    p = strstr(in, pattern);
    if (p == NULL) {
        return;
    }
    p = strchr(p + strlen(pattern), ':');
    if (p == NULL) {
        return;
    }
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
        p++;
    }
    if (*p != '"') {
        return;
    }
    p++;
    while (*p != '\0' && *p != '"' && n + 1 < size) {
        out[n++] = *p++;
    }
    out[n] = '\0';
}

/* Split "NAME:ARG" (ARG optional) into name and number. */
static void parse_mode(const char *text, char *name, size_t size, long *arg)
{
    size_t n = 0;

    while (text[n] != '\0' && text[n] != ':' && n + 1 < size) {
        name[n] = text[n];
        n++;
    }
    name[n] = '\0';
    *arg = -1;
    if (text[n] == ':' && text[n + 1] >= '0' && text[n + 1] <= '9') {
        *arg = strtol(text + n + 1, NULL, 10);
    }
}

/* Mode, argument and tail from "mode:NAME:ARG:TAIL" or from the environment. */
static void choose(const char *idcode, char *name, size_t name_size, long *arg, char *tail,
                   size_t tail_size)
{
    const char *env;

    if (strncmp(idcode, "mode:", 5) == 0) {
        const char *rest = idcode + 5;
        const char *colon;

        parse_mode(rest, name, name_size, arg);
        colon = strchr(rest, ':');                       /* after NAME */
        colon = colon != NULL ? strchr(colon + 1, ':') : NULL; /* after ARG */
        snprintf(tail, tail_size, "%s", colon != NULL ? colon + 1 : "");
        return;
    }
    snprintf(tail, tail_size, "%s", idcode);
    env = getenv("FAKE_ECTRANS_MODE");
    if (env != NULL && env[0] != '\0') {
        parse_mode(env, name, name_size, arg);
    } else {
        snprintf(name, name_size, "ok");
        *arg = -1;
    }
}

static void reply_ok(char *out, const char *tail, const char *district, const char *name)
{
    sprintf(out,
            "{\"flag\":\"1\",\"cause\":\"\",\"data\":{\"ecToken\":\"tok-%s\",\"idNo\":\"%s\","
            "\"idType\":\"01\",\"userName\":\"%s\",\"insuOrg\":\"%s\",\"aaz500\":\"K001934831\","
            "\"id0000\":\"1010010101001\"}}",
            tail, tail, name, district[0] != '\0' ? district : "350200");
}

static void reply_refused(char *out, const char *cause)
{
    sprintf(out, "{\"flag\":\"0\",\"cause\":\"%s\",\"data\":null}", cause);
}

EXPORT int CALLCONV EcTrans(char *inData, char *outData)
{
    char idcode[256], district[32], name[32], tail[256];
    long arg;
    int overlapped;
    int rc = 0;

    atomic_fetch_add(&calls, 1);
    overlapped = atomic_fetch_add(&in_flight, 1) > 0;
    if (overlapped) {
        atomic_fetch_add(&overlaps, 1);
    }
    sleep_ms(2);

    json_string(inData, "idcode", idcode, sizeof idcode);
    json_string(inData, "districtNo", district, sizeof district);
    choose(idcode, name, sizeof name, &arg, tail, sizeof tail);

    if (strstr(inData, "\xE6\x9D\x8E") != NULL) {
        reply_refused(outData, "inData is not GBK");
    } else if (strcmp(name, "rc") == 0) {
        sprintf(outData, "{\"flag\":\"0\",\"cause\":\"" NETWORK_FAILED "\"}");
        rc = arg >= 0 ? (int)arg : 5;
    } else if (strcmp(name, "refuse") == 0) {
        reply_refused(outData, CODE_EXPIRED);
    } else if (strcmp(name, "echo") == 0) {
        sprintf(outData, "{\"flag\":\"0\",\"cause\":\"" BAD_CODE "%s\"}", idcode);
    } else if (strcmp(name, "hang") == 0) {
        int generation = atomic_load(&release_generation);
        while (atomic_load(&release_generation) == generation) {
            sleep_ms(1);
        }
        reply_ok(outData, tail, district, ZHANG_SAN);
    } else if (strcmp(name, "segv") == 0) {
        *nowhere = 1;
    } else if (strcmp(name, "abort") == 0) {
        abort();
    } else if (strcmp(name, "comma") == 0) {
        /* The reply example of the spec (section 1.2.3), trailing comma included. */
        strcpy(outData,
               "{\n"
               "    \"flag\": \"1\",\n"
               "    \"cause\": \"\",\n"
               "    \"data\": {\n"
               "        \"ecToken\": \"398397485fkjdk9sf92j3mlkf\",\n"
               "        \"idNo\": \"350204198001010001\",\n"
               "        \"idType\": \"01\",\n"
               "        \"userName\": \"" ZHANG_SAN "\",\n"
               "        \"insuOrg\": \"350000\",\n"
               "        \"aaz500\": \"K001934831\",\n"
               "        \"id0000\": \"1010010101001\",\n"
               "    }\n"
               "}");
    } else if (strcmp(name, "gb18030") == 0) {
        reply_ok(outData, tail, district, ZHANG_JI);
    } else if (strcmp(name, "big") == 0) {
        char body[640];
        size_t total = arg > 0 ? (size_t)arg : 60000;
        size_t head = strlen("{\"flag\":\"1\",\"cause\":\"\",\"data\":{");
        size_t used;

        /* {"flag":"1","cause":"","data":{<spaces>"idNo":...}} : the echoed idNo comes last, so a
         * reply cut short anywhere loses it. */
        snprintf(body, sizeof body,
                 "\"ecToken\":\"tok-%s\",\"userName\":\"" ZHANG_SAN "\",\"idNo\":\"%s\"}}", tail,
                 tail);
        used = head + strlen(body);
        if (total < used) {
            total = used;
        }
        memcpy(outData, "{\"flag\":\"1\",\"cause\":\"\",\"data\":{", head);
        memset(outData + head, ' ', total - used);
        memcpy(outData + total - strlen(body), body, strlen(body));
        outData[total] = '\0';
    } else if (strcmp(name, "garbage") == 0) {
        size_t n;

        static const char junk[] = "\r\n}{ junk \"unterminated \xFF\xFE\x81\0 after the NUL {\"flag\":\"0\"}";

        reply_ok(outData, tail, district, ZHANG_SAN);
        n = strlen(outData);
        memcpy(outData + n, junk, sizeof junk);
    } else if (strcmp(name, "bom") == 0) {
        strcpy(outData, "\xEF\xBB\xBF");
        reply_ok(outData + 3, tail, district, ZHANG_SAN);
    } else if (strcmp(name, "bomutf8") == 0) {
        strcpy(outData, "\xEF\xBB\xBF");
        reply_ok(outData + 3, tail, district, "\xE5\xBC\xA0\xE4\xB8\x89"); /* 张三 in UTF-8 */
    } else if (strcmp(name, "bom18030") == 0) {
        strcpy(outData, "\x84\x31\x95\x33");
        reply_ok(outData + 4, tail, district, ZHANG_SAN);
    } else if (strcmp(name, "numbers") == 0) {
        sprintf(outData,
                "{\"flag\":1,\"cause\":null,\"data\":{\"ecToken\":\"tok-%s\",\"idNo\":\"%s\","
                "\"idType\":\"01\",\"userName\":\"" ZHANG_SAN "\",\"insuOrg\":350200,"
                "\"aaz500\":null,\"id0000\":1010010101001}}",
                tail, tail);
    } else if (strcmp(name, "ctrl") == 0) {
        sprintf(outData,
                "{\"flag\":\"1\",\"cause\":\"line one\nline\ttwo\",\"data\":{\"idNo\":\"%s\","
                "\"userName\":\"" ZHANG_SAN "\"}}",
                tail);
    } else if (strcmp(name, "chatty") == 0) {
        printf("EcTrans: connecting to the voucher service...\n");
        fflush(stdout);
        fprintf(stderr, "EcTrans: debug output on stderr\n");
        reply_ok(outData, tail, district, ZHANG_SAN);
    } else if (strcmp(name, "notjson") == 0) {
        strcpy(outData, "ERROR 503: voucher service unavailable");
    } else if (strcmp(name, "deep") == 0) {
        long depth = arg >= 0 ? arg : 3000, i;
        char *p = outData + sprintf(outData, "{\"flag\":\"1\",\"data\":");
        for (i = 0; i < depth; i++) {
            *p++ = '[';
        }
        for (i = 0; i < depth; i++) {
            *p++ = ']';
        }
        strcpy(p, "}");
    } else if (strcmp(name, "environ") == 0) {
        static const char *names[] = {"YBPLUG_PWD", "YBPLUG_USR", "HIS_DB_PASSWORD", "PATH"};
        char cause[256] = "env:";
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; i++) {
            strcat(cause, " ");
            strcat(cause, names[i]);
            strcat(cause, getenv(names[i]) != NULL ? "=set" : "=unset");
        }
        reply_refused(outData, cause);
    } else if (strcmp(name, "truncated") == 0) {
        sprintf(outData, "{\"flag\":\"1\",\"cause\":\"\",\"data\":{\"idNo\":\"%.4s", tail);
    } else {
        if (strcmp(name, "slow") == 0) {
            sleep_ms(arg >= 0 ? arg : 300);
        }
        reply_ok(outData, tail, district, ZHANG_SAN);
    }

    if (overlapped && rc == 0 && strncmp(outData, "{\"flag\":\"1\"", 11) == 0) {
        reply_refused(outData, "overlap");
    }
    atomic_fetch_sub(&in_flight, 1);
    return rc;
}
