/* edgepack profiling harness: runs the packaged model on request and reports
 * over the line protocol (see ep_protocol.h and the package README). */
#ifndef EDGEPACK_EP_HARNESS_H_
#define EDGEPACK_EP_HARNESS_H_

#ifdef __cplusplus
extern "C" {
#endif

/* One session: wait for 'S', HELLO, read "R runs warmup", RUN lines, RESULT, DONE.
 * Returns the DONE status (0 on success). Call it in a loop. */
int ep_harness_session(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPACK_EP_HARNESS_H_ */
