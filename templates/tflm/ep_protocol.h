/* edgepack harness line protocol v1, board side (no TFLM dependency).
 *
 * Lines: "EP <KIND> key=value ...*HH\n", HH = XOR of the bytes from "EP" up to '*'.
 */
#ifndef EDGEPACK_EP_PROTOCOL_H_
#define EDGEPACK_EP_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EP_PROTOCOL_VERSION 1
#define EP_LINE_MAX 192

typedef struct {
  char buf[EP_LINE_MAX];
  size_t len;
} ep_line;

/* Start "EP <kind>". */
void ep_line_begin(ep_line* line, const char* kind);
/* Append " key=<text>" (text must have no spaces, '=' or '*'). */
void ep_line_str(ep_line* line, const char* key, const char* value);
/* Append " key=<decimal>". */
void ep_line_u64(ep_line* line, const char* key, uint64_t value);
void ep_line_i32(ep_line* line, const char* key, int32_t value);
/* Append " key=<8 lower-case hex digits>". */
void ep_line_hex32(ep_line* line, const char* key, uint32_t value);
/* Append "*HH\n" and send the line with board_putc. */
void ep_line_send(ep_line* line);

/* The input fill pattern: byte[i] = (i * 31 + 7) & 0xFF. */
void ep_fill_pattern(uint8_t* data, size_t n);
/* CRC-32, zlib polynomial (reflected 0xEDB88320, init/final 0xFFFFFFFF). */
uint32_t ep_crc32(const uint8_t* data, size_t n);
/* The same CRC continued over more bytes: ep_crc32_update(ep_crc32(a, n), b, m) is the CRC of a then b
 * (zlib's crc32(b, crc)); ep_crc32_update(0, data, n) == ep_crc32(data, n). */
uint32_t ep_crc32_update(uint32_t crc, const uint8_t* data, size_t n);
/* Block until the start byte 'S' arrives (other bytes are dropped). */
void ep_wait_start(void);
/* Read "R <runs> <warmup>\n" (stray 'S' and CR bytes ignored); 0 on success. */
int ep_read_run_request(uint32_t* runs, uint32_t* warmup);
/* Send "EP ERR code=<code> msg=<msg>" then "EP DONE status=<code>"; spaces in msg become '_'. */
void ep_send_error(int32_t code, const char* msg);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPACK_EP_PROTOCOL_H_ */
