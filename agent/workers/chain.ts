/**
 * A doubly linked list whose push() hands back the node, so the holder of a node removes it
 * in O(1) — what the scheduler needs to drop a cancelled call from a queue of a million
 * without scanning it (an array's indexOf + splice is O(n) per removal).
 */
export interface ChainNode<T> {
  readonly value: T;
  prev: ChainNode<T> | undefined;
  next: ChainNode<T> | undefined;
}

export class Chain<T> {
  head: ChainNode<T> | undefined;
  tail: ChainNode<T> | undefined;
  size = 0;

  /** Appends `value`; keep the node to remove it later. */
  push(value: T): ChainNode<T> {
    const node: ChainNode<T> = { value, prev: this.tail, next: undefined };
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
    this.size++;
    return node;
  }

  /** Unlinks a node of this chain (each node once: the caller owns that bookkeeping). */
  remove(node: ChainNode<T>): void {
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev;
    node.prev = node.next = undefined;
    this.size--;
  }

  /** Moves the head to the tail: the next in turn becomes the head. */
  rotate(): void {
    const node = this.head;
    if (!node || node === this.tail) return;
    this.remove(node);
    node.prev = this.tail;
    this.tail!.next = node;
    this.tail = node;
    this.size++;
  }
}
