/* edgepack harness line protocol v1, board side. See ep_protocol.h. */
#include "ep_protocol.h"

#include "board.h"

static void put_char(ep_line* line, char c) {
  /* Keep room for "*HH\n". */
  if (line->len + 4 < EP_LINE_MAX) line->buf[line->len++] = c;
}

static void put_text(ep_line* line, const char* s) {
  while (*s) put_char(line, *s++);
}

void ep_line_begin(ep_line* line, const char* kind) {
  line->len = 0;
  put_text(line, "EP ");
  put_text(line, kind);
}

static void put_key(ep_line* line, const char* key) {
  put_char(line, ' ');
  put_text(line, key);
  put_char(line, '=');
}

void ep_line_str(ep_line* line, const char* key, const char* value) {
  put_key(line, key);
  for (; *value; ++value) {
    char c = *value;
    if (c == ' ') c = '_';
    if (c == '=' || c == '*' || c == '\n' || c == '\r') continue;
    put_char(line, c);
  }
}

static void put_u64(ep_line* line, uint64_t value) {
  char digits[21];
  int n = 0;
  do {
    digits[n++] = (char)('0' + (int)(value % 10u));
    value /= 10u;
  } while (value != 0u);
  while (n > 0) put_char(line, digits[--n]);
}

void ep_line_u64(ep_line* line, const char* key, uint64_t value) {
  put_key(line, key);
  put_u64(line, value);
}

void ep_line_i32(ep_line* line, const char* key, int32_t value) {
  put_key(line, key);
  if (value < 0) put_char(line, '-');
  put_u64(line, value < 0 ? (uint64_t)(-(int64_t)value) : (uint64_t)value);
}

static const char kHex[] = "0123456789abcdef";

void ep_line_hex32(ep_line* line, const char* key, uint32_t value) {
  int shift;
  put_key(line, key);
  for (shift = 28; shift >= 0; shift -= 4) put_char(line, kHex[(value >> shift) & 0xFu]);
}

void ep_line_send(ep_line* line) {
  static const char kHexUpper[] = "0123456789ABCDEF";
  uint8_t sum = 0;
  size_t i;
  for (i = 0; i < line->len; ++i) sum ^= (uint8_t)line->buf[i];
  line->buf[line->len++] = '*';
  line->buf[line->len++] = kHexUpper[sum >> 4];
  line->buf[line->len++] = kHexUpper[sum & 0xFu];
  line->buf[line->len++] = '\n';
  for (i = 0; i < line->len; ++i) board_putc(line->buf[i]);
}

void ep_fill_pattern(uint8_t* data, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) data[i] = (uint8_t)((i * 31u + 7u) & 0xFFu);
}

uint32_t ep_crc32_update(uint32_t crc, const uint8_t* data, size_t n) {
  size_t i;
  int k;
  crc ^= 0xFFFFFFFFu;
  for (i = 0; i < n; ++i) {
    crc ^= data[i];
    for (k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

uint32_t ep_crc32(const uint8_t* data, size_t n) { return ep_crc32_update(0u, data, n); }

void ep_wait_start(void) {
  while (board_getc() != 'S') {
  }
}

static int read_number(uint32_t* out, int* next) {
  uint32_t v = 0;
  int digits = 0;
  int c = board_getc();
  while (c == ' ') c = board_getc();
  while (c >= '0' && c <= '9') {
    v = v * 10u + (uint32_t)(c - '0');
    ++digits;
    c = board_getc();
  }
  *out = v;
  *next = c;
  return digits > 0 ? 0 : -1;
}

int ep_read_run_request(uint32_t* runs, uint32_t* warmup) {
  int c = board_getc();
  int next = 0;
  while (c == 'S' || c == '\r' || c == '\n') c = board_getc();
  if (c != 'R') goto skip;
  if (read_number(runs, &next) != 0 || next != ' ') goto skip_from_next;
  if (read_number(warmup, &next) != 0) goto skip_from_next;
  while (next == '\r' || next == ' ') next = board_getc();
  if (next != '\n') goto skip_from_next;
  return *runs > 0 ? 0 : -1;
skip:
  next = c;
skip_from_next:
  while (next != '\n') next = board_getc();
  return -1;
}

void ep_send_error(int32_t code, const char* msg) {
  ep_line line;
  ep_line_begin(&line, "ERR");
  ep_line_i32(&line, "code", code);
  ep_line_str(&line, "msg", msg);
  ep_line_send(&line);
  ep_line_begin(&line, "DONE");
  ep_line_i32(&line, "status", code);
  ep_line_send(&line);
}
