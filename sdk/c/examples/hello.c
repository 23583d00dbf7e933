/*
 * hello.c: call a Lever service from C.
 *
 *   lever_hello_c [url] [json-args]
 *   lever_hello_c lever://dev.lever/helloService//sayHello '["world"]'
 *
 * LEVEROS_IP_PORT (default 127.0.0.1:8080) says where Lever listens.
 */
#include <stdio.h>
#include <string.h>

#include "lever.h"

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : "lever://dev.lever/helloService//sayHello";
  const char *args_json = argc > 2 ? argv[2] : "[\"world\"]";
  lever_client *client = NULL;
  lever_value *args = NULL, *result = NULL;
  lever_error *err = NULL;
  lever_call_options opts = LEVER_CALL_OPTIONS_INIT;
  lever_buf text = LEVER_BUF_INIT;
  int rc;

  opts.timeout_ms = 10000;
  if (lever_client_new(&client, NULL, &err) < 0 ||
      lever_value_from_json(&args, args_json, strlen(args_json), &err) < 0) {
    fprintf(stderr, "error: %s\n", lever_error_message(err));
    lever_error_free(err);
    lever_client_free(client);
    return 2;
  }
  rc = lever_client_invoke(&result, client, url, args, &opts, &err);
  if (rc == LEVER_OK && lever_value_to_json(&text, result, NULL) == LEVER_OK) {
    printf("%s\n", text.ptr);
  } else if (rc == LEVER_EAPP) {
    lever_value_to_json(&text, lever_error_value(err), NULL);
    fprintf(stderr, "remote error: %s\n", text.ptr ? text.ptr : "?");
  } else {
    fprintf(stderr, "call failed (gRPC status %d): %s\n", lever_error_status(err), lever_error_message(err));
  }
  lever_buf_dispose(&text);
  lever_value_free(result);
  lever_value_free(args);
  lever_error_free(err);
  lever_client_free(client);
  return rc == LEVER_OK ? 0 : 1;
}
