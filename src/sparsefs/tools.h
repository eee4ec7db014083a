/* SPDX-License-Identifier: Apache-2.0 */
/* sparsefs --info, --check and --extract: the same library and chunk decoding as the mount. */
#ifndef SPARSEFS_TOOLS_H
#define SPARSEFS_TOOLS_H

int tools_main(int argc, char **argv);

/* Closes standard output: what was printed must have reached it (a full disk fails). Returns
 * rc when not 0 (its failure is already told), else 1 with a message when it did not. */
int close_stdout(int rc);

/* The sp_delta_open flags that -o base_check=VALUE asks for (NULL: the default, full); -1 with a
 * message for a value that is neither full nor quick. Shared by the mount and the tools. */
int base_check_flags(const char *value, unsigned *flags);

#endif
