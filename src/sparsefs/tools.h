/* SPDX-License-Identifier: Apache-2.0 */
/* sparsefs --info, --check and --extract: the same library and chunk decoding as the mount. */
#ifndef SPARSEFS_TOOLS_H
#define SPARSEFS_TOOLS_H

int tools_main(int argc, char **argv);

#endif
