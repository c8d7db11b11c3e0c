;; A hand-written `airlock:integration` component for the core-wasm cases of the security
;; catalogue (docs/security-model.md, "Security catalogue coverage"): each action is one attack
;; or probe at the level of wasm instructions, where a Rust guest cannot be made to say exactly
;; what it does. Actions are told apart by their first letter; numbers in the input (`{"n": 12}`)
;; are read as the decimal digits it contains.
;;
;;   loop         `(loop br 0)`, forever                                          SB-01, SB-02
;;   recurse      `func f call f`                                                 SB-03
;;   grow-memory  `memory.grow` one page at a time, touching each, until refused   SB-04
;;   table-grow   grow the table to n elements in one `table.grow`                 SB-05
;;   bulk         grow memory to n pages; `memory.fill`, `memory.copy`, `table.copy` over all
;;                of it, four times                                               SB-15
;;   fill         grow memory to n pages; write a pattern over all of memory past the data
;;                segments, the table and the globals                             SB-19, TI-03
;;   scan         grow memory to n pages; count what is not as a fresh instance has it  SB-19
;;   check        fill, then scan in the same instance: the scan's control
;;   address      `i32.load` at address n                                         SB-16
;;   offset       `i32.load offset=0xffff0000` at address n                        SB-16
;;   write        `i64.store` then `i64.load` at address n                          SB-16
;;   mode         `i32.load` at 8 + (n << 3), the address-mode form of CVE-2023-26489  SB-16
;;
;; Memory layout: data segments in [0, 128), the result area at 512, scratch for numbers at
;; [600, 640), and the bump allocator (strings the host passes in, output) from 1024.
(component
  (core module $m
    (memory (export "memory") 1)
    (table $t 4 funcref)
    (elem (table $t) (i32.const 0) func $nop $nop)
    (elem declare func $marker)
    (global $bump (mut i32) (i32.const 1024))
    (global $input (mut i32) (i32.const 0))
    (global $input_len (mut i32) (i32.const 0))
    (global $g64 (mut i64) (i64.const 0))
    (global $g32 (mut i32) (i32.const 0))
    (global $gref (mut funcref) (ref.null func))

    ;; 16 known bytes for in-bounds reads, then the fixed pieces of every output.
    (data (i32.const 0) "\01\02\03\04\05\06\07\08\09\0a\0b\0c\0d\0e\0f\10")
    (data (i32.const 16) "{\"ok\":true}")
    (data (i32.const 32) "{\"memory\":")
    (data (i32.const 48) ",\"table\":")
    (data (i32.const 64) ",\"globals\":")
    (data (i32.const 80) "}")
    (data (i32.const 96) "{\"value\":")

    (func $nop)
    (func $marker)

    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local $end i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
      (local.set $end (i32.add (local.get $p) (local.get 3)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (drop (memory.grow
            (i32.add
              (i32.shr_u
                (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                (i32.const 16))
              (i32.const 1))))))
      (global.set $bump (local.get $end))
      (local.get $p))

    ;; The decimal digits of the input, as one number.
    (func $number (result i64)
      (local $i i32)
      (local $c i32)
      (local $n i64)
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (global.get $input_len)))
          (local.set $c (i32.load8_u (i32.add (global.get $input) (local.get $i))))
          (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
            (then
              (local.set $n
                (i64.add
                  (i64.mul (local.get $n) (i64.const 10))
                  (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (local.get $n))

    ;; Writes `len` bytes from `src` at `dst`; returns the end.
    (func $put (param $dst i32) (param $src i32) (param $len i32) (result i32)
      (memory.copy (local.get $dst) (local.get $src) (local.get $len))
      (i32.add (local.get $dst) (local.get $len)))

    ;; Writes `v` in decimal at `dst`; returns the end.
    (func $decimal (param $v i64) (param $dst i32) (result i32)
      (local $tmp i32)
      (local.set $tmp (i32.const 640))
      (loop $digit
        (local.set $tmp (i32.sub (local.get $tmp) (i32.const 1)))
        (i32.store8 (local.get $tmp)
          (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
        (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
        (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
      (call $put (local.get $dst) (local.get $tmp) (i32.sub (i32.const 640) (local.get $tmp))))

    ;; `ok(string)` in the result area.
    (func $ok (param $ptr i32) (param $len i32) (result i32)
      (i32.store8 (i32.const 512) (i32.const 0))
      (i32.store (i32.const 516) (local.get $ptr))
      (i32.store (i32.const 520) (local.get $len))
      (i32.const 512))

    (func $done (result i32)
      (call $ok (i32.const 16) (i32.const 11)))

    ;; A fresh output buffer past everything the host wrote.
    (func $out (result i32)
      (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))

    ;; `{"value":v}`
    (func $value (param $v i64) (result i32)
      (local $start i32)
      (local $end i32)
      (local.set $start (call $out))
      (local.set $end (call $put (local.get $start) (i32.const 96) (i32.const 9)))
      (local.set $end (call $decimal (local.get $v) (local.get $end)))
      (local.set $end (call $put (local.get $end) (i32.const 80) (i32.const 1)))
      (call $ok (local.get $start) (i32.sub (local.get $end) (local.get $start))))

    ;; Grows memory to `pages` pages in one `memory.grow`, if it is smaller.
    (func $grow_to (param $pages i32)
      (if (i32.gt_u (local.get $pages) (memory.size))
        (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size)))))))

    (func $recurse
      (call $recurse))

    (func $grow_memory (result i32)
      (local $page i32)
      (loop $more
        (local.set $page (memory.grow (i32.const 1)))
        (if (i32.ne (local.get $page) (i32.const -1))
          (then
            (i32.store8 (i32.mul (local.get $page) (i32.const 65536)) (i32.const 1))
            (br $more))))
      (call $value (i64.extend_i32_u (memory.size))))

    ;; The region a fill writes and a scan reads: [128, 512), [640, 1024) and everything past
    ;; the host's strings, rounded up to 8 bytes.
    (func $fill_memory
      (local $from i32)
      (memory.fill (i32.const 128) (i32.const 0xa5) (i32.const 384))
      (memory.fill (i32.const 640) (i32.const 0xa5) (i32.const 384))
      (local.set $from (call $out))
      (memory.fill (local.get $from) (i32.const 0xa5)
        (i32.sub (i32.mul (memory.size) (i32.const 65536)) (local.get $from))))

    ;; Non-zero eight-byte words in [from, to) (both multiples of 8).
    (func $dirty (param $from i32) (param $to i32) (result i64)
      (local $n i64)
      (block $end
        (loop $next
          (br_if $end (i32.ge_u (local.get $from) (local.get $to)))
          (if (i64.ne (i64.load (local.get $from)) (i64.const 0))
            (then (local.set $n (i64.add (local.get $n) (i64.const 1)))))
          (local.set $from (i32.add (local.get $from) (i32.const 8)))
          (br $next)))
      (local.get $n))

    (func $fill (result i32)
      (call $grow_to (i32.wrap_i64 (call $number)))
      (call $fill_memory)
      (table.fill $t (i32.const 0) (ref.func $marker) (table.size $t))
      (drop (table.grow $t (ref.func $marker) (i32.const 1000)))
      (global.set $g64 (i64.const 0xa5a5a5a5a5a5a5a5))
      (global.set $g32 (i32.const 0xa5a5a5a5))
      (global.set $gref (ref.func $marker))
      (call $done))

    ;; Residue in memory (non-zero bytes where a fresh instance has zeros), in the table
    ;; (a size other than 4, or its elements other than [nop, nop, null, null]) and in the
    ;; globals (other than their initial values).
    (func $scan (result i32)
      (local $memory i64)
      (local $table i64)
      (local $globals i64)
      (local $start i32)
      (local $end i32)
      (call $grow_to (i32.wrap_i64 (call $number)))
      (local.set $memory
        (i64.add
          (i64.add
            (call $dirty (i32.const 128) (i32.const 512))
            (call $dirty (i32.const 640) (i32.const 1024)))
          (call $dirty (call $out) (i32.mul (memory.size) (i32.const 65536)))))
      (if (i32.ne (table.size $t) (i32.const 4))
        (then (local.set $table (i64.add (local.get $table) (i64.const 1))))
        (else
          (if (i32.eqz (ref.is_null (table.get $t (i32.const 2))))
            (then (local.set $table (i64.add (local.get $table) (i64.const 1)))))
          (if (i32.eqz (ref.is_null (table.get $t (i32.const 3))))
            (then (local.set $table (i64.add (local.get $table) (i64.const 1)))))
          (if (ref.is_null (table.get $t (i32.const 0)))
            (then (local.set $table (i64.add (local.get $table) (i64.const 1)))))))
      (if (i64.ne (global.get $g64) (i64.const 0))
        (then (local.set $globals (i64.add (local.get $globals) (i64.const 1)))))
      (if (i32.ne (global.get $g32) (i32.const 0))
        (then (local.set $globals (i64.add (local.get $globals) (i64.const 1)))))
      (if (i32.eqz (ref.is_null (global.get $gref)))
        (then (local.set $globals (i64.add (local.get $globals) (i64.const 1)))))
      ;; The output goes past the scanned region's start, which is no longer needed.
      (local.set $start (call $out))
      (local.set $end (call $put (local.get $start) (i32.const 32) (i32.const 10)))
      (local.set $end (call $decimal (local.get $memory) (local.get $end)))
      (local.set $end (call $put (local.get $end) (i32.const 48) (i32.const 9)))
      (local.set $end (call $decimal (local.get $table) (local.get $end)))
      (local.set $end (call $put (local.get $end) (i32.const 64) (i32.const 11)))
      (local.set $end (call $decimal (local.get $globals) (local.get $end)))
      (local.set $end (call $put (local.get $end) (i32.const 80) (i32.const 1)))
      (call $ok (local.get $start) (i32.sub (local.get $end) (local.get $start))))

    (func $bulk (result i32)
      (local $round i32)
      (local $size i32)
      (call $grow_to (i32.wrap_i64 (call $number)))
      (drop (table.grow $t (ref.func $marker) (i32.const 5000)))
      (local.set $size (i32.mul (memory.size) (i32.const 65536)))
      (loop $again
        (memory.fill (i32.const 65536) (i32.const 0x5a) (i32.sub (local.get $size) (i32.const 65536)))
        (memory.copy
          (i32.const 65536)
          (i32.add (i32.const 65536) (i32.shr_u (local.get $size) (i32.const 2)))
          (i32.shr_u (local.get $size) (i32.const 2)))
        (table.copy $t $t (i32.const 0) (i32.const 2500) (i32.const 2500))
        (local.set $round (i32.add (local.get $round) (i32.const 1)))
        (br_if $again (i32.lt_u (local.get $round) (i32.const 4))))
      (call $done))

    (func (export "invoke") (param $action i32) (param $action_len i32) (param $in i32) (param $in_len i32) (result i32)
      (local $c i32)
      (global.set $input (local.get $in))
      (global.set $input_len (local.get $in_len))
      (local.set $c (i32.load8_u (local.get $action)))
      ;; l: loop
      (if (i32.eq (local.get $c) (i32.const 0x6c)) (then (loop $forever (br $forever))))
      ;; r: recurse
      (if (i32.eq (local.get $c) (i32.const 0x72)) (then (call $recurse)))
      ;; g: grow-memory
      (if (i32.eq (local.get $c) (i32.const 0x67)) (then (return (call $grow_memory))))
      ;; t: table-grow to n elements (the result is what `table.grow` returned)
      (if (i32.eq (local.get $c) (i32.const 0x74))
        (then
          (return (call $value (i64.extend_i32_u
            (table.grow $t (ref.null func)
              (i32.wrap_i64 (i64.sub (call $number) (i64.const 4)))))))))
      ;; b: bulk
      (if (i32.eq (local.get $c) (i32.const 0x62)) (then (return (call $bulk))))
      ;; f: fill
      (if (i32.eq (local.get $c) (i32.const 0x66)) (then (return (call $fill))))
      ;; s: scan
      (if (i32.eq (local.get $c) (i32.const 0x73)) (then (return (call $scan))))
      ;; c: check (fill, then scan)
      (if (i32.eq (local.get $c) (i32.const 0x63))
        (then (drop (call $fill)) (return (call $scan))))
      ;; a: address
      (if (i32.eq (local.get $c) (i32.const 0x61))
        (then (return (call $value (i64.extend_i32_u
          (i32.load (i32.wrap_i64 (call $number))))))))
      ;; o: offset
      (if (i32.eq (local.get $c) (i32.const 0x6f))
        (then (return (call $value (i64.extend_i32_u
          (i32.load offset=0xffff0000 (i32.wrap_i64 (call $number))))))))
      ;; w: write
      (if (i32.eq (local.get $c) (i32.const 0x77))
        (then
          (i64.store (i32.wrap_i64 (call $number)) (i64.const 0x0102030405060708))
          (return (call $value (i64.load (i32.wrap_i64 (call $number)))))))
      ;; m: mode
      (if (i32.eq (local.get $c) (i32.const 0x6d))
        (then (return (call $value (i64.extend_i32_u
          (i32.load (i32.add (i32.const 8)
            (i32.shl (i32.wrap_i64 (call $number)) (i32.const 3)))))))))
      unreachable)
  )
  (core instance $i (instantiate $m))

  ;; The export, shaped as wit-component shapes it: the record type travels with the function.
  (type $error (record (field "code" string) (field "message" string)))
  (func $invoke
    (param "action" string) (param "input" string) (result (result string (error $error)))
    (canon lift (core func $i "invoke") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (component $handler
    (type $error-def (record (field "code" string) (field "message" string)))
    (import "import-type-error" (type $error-in (eq $error-def)))
    (import "import-func-invoke"
      (func $f (param "action" string) (param "input" string) (result (result string (error $error-in)))))
    (export $error-out "error" (type $error-in))
    (export "invoke" (func $f)
      (func (param "action" string) (param "input" string) (result (result string (error $error-out))))))
  (instance $exports (instantiate $handler
    (with "import-func-invoke" (func $invoke))
    (with "import-type-error" (type $error))))
  (export "airlock:integration/handler@0.1.0" (instance $exports))
)
