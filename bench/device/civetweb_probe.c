/* bench/device/civetweb_probe.c: starts civetweb as prometheus-cpp's Exposer does (listening_ports,
 * num_threads 2) and prints why it fails, if it does. Built and run by bench/device/multi_gpu.sh
 * (step civet) to find out why the worker's /metrics Exposer throws in a CUDA LibTorch process.
 * Usage: civetweb_probe [HOST:PORT] */
#include <civetweb.h>
#include <stdio.h>
#include <string.h>

static int log_message(const struct mg_connection *conn, const char *message) {
  (void)conn;
  fprintf(stderr, "civetweb says: %s\n", message);
  return 1;
}

int main(int argc, char **argv) {
  const char *port = argc > 1 ? argv[1] : "127.0.0.1:19464";
  const char *options[] = {"listening_ports", port, "num_threads", "2", NULL};
  struct mg_callbacks callbacks;
  memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = log_message;
  unsigned features = mg_init_library(0);
  printf("civetweb %s, mg_init_library(0) -> 0x%x, features available 0x%x\n", mg_version(),
         features, mg_check_feature(0xffff));
  struct mg_context *ctx = mg_start(&callbacks, NULL, options);
  if (ctx == NULL) {
    printf("mg_start(%s) FAILED\n", port);
    return 1;
  }
  printf("mg_start(%s) ok\n", port);
  mg_stop(ctx);
  return 0;
}
