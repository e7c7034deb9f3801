/* Signals as data: a handler writes each signal's number into a pipe, and a thread reads
 * them with moat_signals_wait. Unlike sigwait, this works whatever threads libraries start
 * before main blocks anything (the sanitizers' runtime does), because a handler applies to
 * the whole process. The pipe is the one global a signal handler needs. */
#ifndef MOAT_SIGNALS_H
#define MOAT_SIGNALS_H

#include <stddef.h>

#include "error.h"

/* Installs handlers for the n signals. Call once, before starting threads. */
int moat_signals_install(const int *sigs, size_t n, moat_error *err);

/* Blocks until one of the signals arrives; returns its number, or -1 if the pipe failed. */
int moat_signals_wait(void);

/* Makes a pending or future moat_signals_wait return sig, as if it had arrived (to wake
 * the waiting thread at shutdown). */
void moat_signals_raise(int sig);

#endif
