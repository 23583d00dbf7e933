/* lever.h must stand alone under -std=c99 -pedantic -Werror. */
#include "lever.h"

int lever_header_test_dummy(void);
int lever_header_test_dummy(void) {
  lever_client_options o = LEVER_CLIENT_OPTIONS_INIT;
  lever_call_options c = LEVER_CALL_OPTIONS_INIT;
  lever_server_options s = LEVER_SERVER_OPTIONS_INIT;
  lever_buf b = LEVER_BUF_INIT;
  return (int)(o.version + c.version + s.version + b.size);
}
