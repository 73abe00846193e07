// A vector that keeps its first N elements inline: shapes and per-op lists
// are short, and a heap allocation per shape would dominate a small op.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <type_traits>
#include <vector>

namespace tg {

template <class T, size_t N>
class SmallVector {
    static_assert(std::is_trivially_copyable_v<T>, "SmallVector holds trivially copyable values");

public:
    using value_type = T;
    using size_type = size_t;
    using iterator = T*;
    using const_iterator = const T*;
    using reference = T&;
    using const_reference = const T&;

    SmallVector() = default;
    explicit SmallVector(size_t n, const T& value = T()) { assign(n, value); }
    SmallVector(std::initializer_list<T> values) { assign(values.begin(), values.end()); }
    template <class It, class = decltype(*std::declval<It>(), ++std::declval<It&>())>
    SmallVector(It first, It last) { assign(first, last); }
    SmallVector(const std::vector<T>& v) { assign(v.begin(), v.end()); }  // NOLINT: implicit on purpose
    SmallVector(const SmallVector& o) { copy_from(o); }
    SmallVector(SmallVector&& o) noexcept { take(std::move(o)); }
    ~SmallVector() { release(); }

    SmallVector& operator=(const SmallVector& o)
    {
        if (this != &o) copy_from(o);
        return *this;
    }
    SmallVector& operator=(SmallVector&& o) noexcept
    {
        if (this != &o) {
            release();
            take(std::move(o));
        }
        return *this;
    }
    SmallVector& operator=(std::initializer_list<T> values)
    {
        assign(values.begin(), values.end());
        return *this;
    }

    operator std::vector<T>() const { return std::vector<T>(begin(), end()); }  // NOLINT

    template <class It>
    void assign(It first, It last)
    {
        size_t n = size_t(std::distance(first, last));
        reserve(n);
        std::copy(first, last, data_);
        size_ = n;
    }
    void assign(size_t n, const T& value)
    {
        reserve(n);
        std::fill(data_, data_ + n, value);
        size_ = n;
    }

    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    size_t capacity() const { return capacity_; }
    T* data() { return data_; }
    const T* data() const { return data_; }
    T* begin() { return data_; }
    T* end() { return data_ + size_; }
    const T* begin() const { return data_; }
    const T* end() const { return data_ + size_; }
    const T* cbegin() const { return data_; }
    const T* cend() const { return data_ + size_; }
    std::reverse_iterator<T*> rbegin() { return std::reverse_iterator<T*>(end()); }
    std::reverse_iterator<T*> rend() { return std::reverse_iterator<T*>(begin()); }
    std::reverse_iterator<const T*> rbegin() const { return std::reverse_iterator<const T*>(end()); }
    std::reverse_iterator<const T*> rend() const { return std::reverse_iterator<const T*>(begin()); }
    T& operator[](size_t i) { return data_[i]; }
    const T& operator[](size_t i) const { return data_[i]; }
    T& front() { return data_[0]; }
    const T& front() const { return data_[0]; }
    T& back() { return data_[size_ - 1]; }
    const T& back() const { return data_[size_ - 1]; }

    void reserve(size_t n)
    {
        if (n <= capacity_) return;
        size_t cap = std::max(n, capacity_ * 2);
        T* p = static_cast<T*>(::operator new(cap * sizeof(T)));
        if (size_) std::memcpy(static_cast<void*>(p), data_, size_ * sizeof(T));
        if (data_ != inline_) ::operator delete(data_);
        data_ = p;
        capacity_ = cap;
    }
    void resize(size_t n, const T& value = T())
    {
        reserve(n);
        if (n > size_) std::fill(data_ + size_, data_ + n, value);
        size_ = n;
    }
    void clear() { size_ = 0; }
    void push_back(const T& v)
    {
        if (size_ == capacity_) {
            T copy = v;  // v may live in this vector
            reserve(size_ + 1);
            data_[size_++] = copy;
            return;
        }
        data_[size_++] = v;
    }
    template <class... Args>
    T& emplace_back(Args&&... args)
    {
        push_back(T(std::forward<Args>(args)...));
        return back();
    }
    void pop_back() { --size_; }

    T* insert(const T* pos, const T& value) { return insert(pos, &value, &value + 1); }
    T* insert(const T* pos, std::initializer_list<T> values) { return insert(pos, values.begin(), values.end()); }
    template <class It>
    T* insert(const T* pos, It first, It last)
    {
        size_t at = size_t(pos - data_);
        size_t n = size_t(std::distance(first, last));
        SmallVector<T, N> items(first, last);  // the source may alias this vector
        reserve(size_ + n);
        std::memmove(static_cast<void*>(data_ + at + n), data_ + at, (size_ - at) * sizeof(T));
        std::copy(items.begin(), items.end(), data_ + at);
        size_ += n;
        return data_ + at;
    }
    T* erase(const T* pos) { return erase(pos, pos + 1); }
    T* erase(const T* first, const T* last)
    {
        size_t at = size_t(first - data_), n = size_t(last - first);
        std::memmove(static_cast<void*>(data_ + at), data_ + at + n, (size_ - at - n) * sizeof(T));
        size_ -= n;
        return data_ + at;
    }

    friend bool operator==(const SmallVector& a, const SmallVector& b)
    {
        // A loop rather than std::equal, which calls memcmp: shapes are a few elements.
        if (a.size_ != b.size_) return false;
        for (size_t i = 0; i < a.size_; ++i)
            if (!(a.data_[i] == b.data_[i])) return false;
        return true;
    }
    friend bool operator!=(const SmallVector& a, const SmallVector& b) { return !(a == b); }
    friend bool operator<(const SmallVector& a, const SmallVector& b)
    {
        return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
    }

private:
    void release()
    {
        if (data_ != inline_) ::operator delete(data_);
        data_ = inline_;
        capacity_ = N;
        size_ = 0;
    }
    // Copies of short vectors move the whole inline buffer: a fixed-size copy
    // is a few register moves, where a copy of size_ elements calls memcpy.
    // Either buffer holds at least N elements (a heap one holds more than N).
    void copy_from(const SmallVector& o)
    {
        if (o.size_ <= N) {
            release();
            std::memcpy(static_cast<void*>(inline_), o.data_, N * sizeof(T));
            size_ = o.size_;
        } else {
            assign(o.begin(), o.end());
        }
    }
    void take(SmallVector&& o)
    {
        if (o.data_ == o.inline_) {
            std::memcpy(static_cast<void*>(inline_), o.inline_, N * sizeof(T));
            data_ = inline_;
            capacity_ = N;
        } else {
            data_ = o.data_;
            capacity_ = o.capacity_;
            o.data_ = o.inline_;
            o.capacity_ = N;
        }
        size_ = o.size_;
        o.size_ = 0;
    }

    T* data_ = inline_;
    size_t size_ = 0;
    size_t capacity_ = N;
    T inline_[N];
};

}  // namespace tg
